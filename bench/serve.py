"""Serving speed on the loopback: `bertfit serve` against the server a user would write, and against `predict`.

One run, variants one after another on the same texts (emotion test + validation tweets), each for --seconds:

    (a) a naive server: FastAPI calling transformers.pipeline("text-classification", model=DIR) once per request
        (a sync endpoint: FastAPI runs it in its thread pool), under uvicorn
    (b) bertfit serve, clients sending one text per request, at each of --clients concurrent clients
    (c) bertfit serve, 32 texts per request, 8 clients
    (d) Classifier.predict on all the texts at once in this process (the ceiling: no HTTP, no waiting)

Each server runs in its own process; the clients (aiohttp, asyncio) run in this one and share the machine's cores
with it, as they would on one box. aiohttp, not httpx: with httpx the clients themselves took 9-13 ms of CPU per
request (4-7 s of an 8-second run at 64 clients, on the cores the servers need), with aiohttp under 0.5 ms.
Printed: requests/s, texts/s, p50/p95/p99 latency, and the ratios the issue asks for. With --soak S: S seconds at 64
clients sampling the server's RSS (it must not grow after warm-up); with --burst N: N connections opened at once
(each must be answered, or refused with 503).

    python bench/serve.py --model models/emotion --seconds 10
    python bench/serve.py --model models/emotion --seconds 3 --clients 1,8 --texts 500      # a quick check
    python bench/serve.py --model models/emotion --serve-args '--torch-threads 1'          # serve's own options
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np
import pandas as pd
from machine import machine

from bertfit.prediction.classifier import Classifier

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "emotion"
NAIVE = """
import sys
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline
import uvicorn
clf = pipeline("text-classification", model=sys.argv[1], device="cpu")
app = FastAPI()
class Body(BaseModel):
    texts: list[str]
@app.post("/predict")
def predict(body: Body):
    return {"predictions": clf(body.texts)}
@app.get("/health")
def health():
    return {"status": "ok"}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], port: int) -> subprocess.Popen:
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit(f"server did not start: {args}")


async def load(port: int, texts: list[str], clients: int, per_request: int, seconds: float) -> dict[str, Any]:
    """`clients` loops, each sending its next `per_request` texts and waiting for the answer, for `seconds`."""
    latencies: list[float] = []
    refused = 0
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)

    async def client(i: int, http: aiohttp.ClientSession) -> None:
        nonlocal refused
        k = i * 7919
        while time.perf_counter() < stop:
            batch = [texts[(k + j) % len(texts)] for j in range(per_request)]
            k += per_request * clients
            started = time.perf_counter()
            try:
                async with http.post("/predict", json={"texts": batch}) as answer:
                    await answer.read()
                    status = answer.status
            except aiohttp.ClientError:  # counted with the refused: a server that drops connections
                refused += 1
                await asyncio.sleep(0.01)
                continue
            if status == 200:
                latencies.append(time.perf_counter() - started)
            else:
                refused += 1

    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=connector, timeout=timeout) as http:
        began = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        wall = time.perf_counter() - began
    ms = np.array(latencies) * 1000
    p50, p95, p99 = (float(np.percentile(ms, q)) for q in (50, 95, 99))
    return {"clients": clients, "texts_per_request": per_request, "requests_s": len(ms) / wall,
            "texts_s": len(ms) * per_request / wall, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
            "refused": refused}  # fmt: skip


async def burst(port: int, connections: int) -> dict[str, int]:
    """`connections` requests on as many connections at once: each answered (200) or refused (503), none lost."""
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=120)

    async def one(http: aiohttp.ClientSession) -> int:
        async with http.post("/predict", json={"texts": ["ok"]}) as answer:
            await answer.read()
            return answer.status

    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=connector, timeout=timeout) as http:
        answers = await asyncio.gather(*(one(http) for _ in range(connections)), return_exceptions=True)
    codes = [a if isinstance(a, int) else type(a).__name__ for a in answers]
    return {str(code): codes.count(code) for code in set(codes)}


def rss_mib(pid: int) -> float:
    """The resident memory of the server and its children (the model process) together."""
    import psutil

    server = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [server, *server.children(recursive=True)]) / 2**20


def soak(port: int, pid: int, texts: list[str], seconds: float) -> list[float]:
    samples = []
    for _ in range(max(1, int(seconds // 10))):
        asyncio.run(load(port, texts, 64, 1, 10))
        samples.append(round(rss_mib(pid), 1))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model folder written by bertfit train")
    parser.add_argument("--seconds", type=float, default=10.0, help="per variant")
    parser.add_argument("--clients", default="1,8,64,256")
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of the RSS soak at 64 clients [skip]")
    parser.add_argument("--burst", type=int, default=0, help="connections opened at once [skip]")
    parser.add_argument("--serve-args", default="", help="more options of bertfit serve, e.g. '--torch-threads 1'")
    args = parser.parse_args()
    frames = [pd.read_parquet(DATA / f"{split}.parquet") for split in ("test", "validation")]
    texts = pd.concat(frames)["text"].astype(str).tolist()[: args.texts]
    clients = [int(c) for c in args.clients.split(",")]
    rows: dict[str, Any] = {}

    port = free_port()
    naive = start([sys.executable, "-c", NAIVE, args.model, str(port)], port)
    try:
        rows["a_naive_64"] = asyncio.run(load(port, texts, 64, 1, args.seconds))
    finally:
        naive.terminate(), naive.wait(30)

    port = free_port()
    command = [sys.executable, "-m", "bertfit", "--quiet", "serve", args.model, "--port", str(port)]
    served = start(command + args.serve_args.split(), port)
    info = httpx.get(f"http://127.0.0.1:{port}/info", timeout=30).json()
    served_as = {"dtype": info["dtype"], "engine": info.get("engine"), **{k: info["serving"][k] for k in
                 ("model_process", "max_batch_tokens", "max_wait_ms")}}  # fmt: skip
    print("served as", served_as, flush=True)
    try:
        for n in clients:
            rows[f"b_serve_{n}"] = asyncio.run(load(port, texts, n, 1, args.seconds))
        rows["c_serve_32_per_request"] = asyncio.run(load(port, texts, 8, 32, args.seconds))
        extra = {"soak_rss_mib": soak(port, served.pid, texts, args.soak)} if args.soak else {}
        if args.burst:
            extra["burst"] = asyncio.run(burst(port, args.burst))
    finally:
        served.terminate()
        extra_rc = served.wait(60)
    clf = Classifier.from_pretrained(args.model)
    clf.predict(texts[:64])
    started = time.perf_counter()
    clf.predict(texts)
    rows["d_predict"] = {"texts_s": len(texts) / (time.perf_counter() - started)}
    report(rows, extra | {"serve_exit_code": extra_rc, "served_as": served_as}, args)


def report(rows: dict[str, Any], extra: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"{'variant':<26}{'req/s':>9}{'texts/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'503':>6}")
    for name, r in rows.items():
        cells = [r.get(k) for k in ("requests_s", "texts_s", "p50_ms", "p95_ms", "p99_ms")]
        print(f"{name:<26}" + "".join(f"{c:>9.1f} " if c is not None else f"{'':>9} " for c in cells)
              + f"{r.get('refused', ''):>5}")  # fmt: skip
    ratios = {}
    if "b_serve_64" in rows:
        ratios["serve_64 / naive_64 (texts/s)"] = rows["b_serve_64"]["texts_s"] / rows["a_naive_64"]["texts_s"]
        ratios["serve_64 / predict (texts/s)"] = rows["b_serve_64"]["texts_s"] / rows["d_predict"]["texts_s"]
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}")
    print(json.dumps({"machine": machine(), "rows": rows, "ratios": ratios, **extra,
                      "command": " ".join([sys.executable, *sys.argv]), "cwd": os.getcwd()}, default=str))  # fmt: skip


if __name__ == "__main__":
    main()
