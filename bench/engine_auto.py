"""Default prediction (`--engine auto`, `--dtype auto`) vs transformers.pipeline(batch_size=64), and tokenization's
rate by thread count (issue 17).

One process, variants interleaved round by round on the same texts (real emotion tweets with models/emotion, real
Yelp sentences with models/yelp):

    (a) transformers.pipeline("text-classification", model=DIR, device="cpu")(texts, batch_size=64, top_k=None):
        the anchor, model loaded beforehand (not timed)
    (b) bertfit default, first run: bertfit.predict_file(DIR, in.parquet, out.parquet, probs=True) with an empty
        bertfit cache, so the time includes loading the model, measuring torch fp32/bf16 against OpenVINO and
        converting (what a user's first `bertfit predict` of 5,000+ rows costs; --convert-from 0, the default,
        makes a smaller sample measure too)
    (c) bertfit default, later runs: the same call with the choice remembered (loading included)
    (d) with --torch, bertfit torch only: the same with engine="torch" (dtype auto, remembered)
    (e) bertfit default with --window rows per window (default 500), so that tokenizing overlaps scoring (the
        default window, 50,000 rows, holds the whole sample: its one window is tokenized before anything is scored)

Each prints seconds (median of the rounds), rows/s, the ratio to (a), the engine and dtype chosen, and top-label
agreement with bertfit torch fp32. Then tokenization alone (WindowEncoder, one call per 50,000-row window as
predict_file makes) in a fresh process per RAYON_NUM_THREADS, and how long predict_file waited on its tokenizing
thread for the first window and for the later ones (tokenization left on the critical path).

    python bench/engine_auto.py --rows 2000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MODELS = Path("/work/exp/models")
TOKENIZE = """
import os, sys, time, pandas as pd
from bertfit.tokenization import WindowEncoder, load_tokenizer
texts = pd.read_parquet(sys.argv[2]).text.tolist()
enc = WindowEncoder(load_tokenizer(sys.argv[1]), 128)
enc(texts[:1000])
start = time.perf_counter()
for _ in range(3):
    enc(texts)
print(3 * len(texts) / (time.perf_counter() - start))
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=5000, help="texts per data set (2,000-5,000)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (the first is the cold one)")
    parser.add_argument("--window", type=int, default=500, help="rows per window of the overlap variant (0: off)")
    parser.add_argument("--torch", action="store_true", help="also time bertfit with engine='torch' (dtype auto)")
    parser.add_argument(
        "--convert-from",
        type=int,
        default=0,
        help="engine_choice.CONVERT_MIN_ROWS for this run (0: the first run measures and converts, "
        "as any input of 5,000+ rows does; 5000: the library's rule)",
    )
    parser.add_argument("--threads", default="1,2,4", help="RAYON_NUM_THREADS values for the tokenization table")
    return parser.parse_args()


def load_sets(rows: int) -> dict[str, tuple[Path, list[str]]]:
    splits = ("test", "validation", "train")  # test and validation first: 4,000 tweets the model did not train on
    emotion = pd.concat([pd.read_parquet(DATA / "emotion" / f"{s}.parquet") for s in splits])
    yelp = pd.read_parquet(DATA / "yelp_polarity_sentences" / "test.parquet").sample(rows, random_state=0)
    return {"emotion": (MODELS / "emotion", emotion.text.tolist()[:rows]),
            "yelp": (MODELS / "yelp", yelp.text.tolist())}  # fmt: skip


def pipeline_run(model_dir: Path) -> Any:
    import transformers

    pipe = transformers.pipeline("text-classification", model=str(model_dir), device="cpu")
    labels = [pipe.model.config.id2label[i] for i in range(pipe.model.config.num_labels)]

    def run(texts: list[str]) -> np.ndarray:
        rows = pipe(texts, batch_size=64, top_k=None)
        return np.array([[{d["label"]: d["score"] for d in row}[name] for name in labels] for row in rows])

    return run


def bertfit_run(model_dir: Path, src: Path, work: Path, **kwargs: Any) -> Any:
    import bertfit.prediction.classifier as classifier

    def run(texts: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
        out = Path(tempfile.mkdtemp(dir=work)) / "out.parquet"
        done = classifier.predict_file(model_dir, src, out, probs=True, **kwargs)
        frame = pd.read_parquet(out)
        return frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy(), done

    return run


def waits_on_tokenizer() -> list[float]:
    """Patch stream._prefetch to record how long the consumer waits for each item (window) it asks for."""
    from bertfit.prediction import stream

    real, waits = stream._prefetch, []

    def prefetch(items: Any) -> Any:
        gen = real(items)
        while True:
            start = time.perf_counter()
            item = next(gen, None)
            waits.append(time.perf_counter() - start)
            if item is None:
                return
            yield item

    stream._prefetch = prefetch
    return waits


def compare(
    name: str, model_dir: Path, texts: list[str], rounds: int, work: Path, window: int, with_torch: bool
) -> list[dict[str, Any]]:
    from bertfit.prediction.classifier import Classifier

    src = work / f"{name}.parquet"
    pd.DataFrame({"text": texts}).to_parquet(src)
    reference = Classifier.from_pretrained(model_dir, engine="torch", dtype="fp32").predict_proba(texts).argmax(1)
    variants = {"a pipeline(64)": pipeline_run(model_dir), "bertfit default": bertfit_run(model_dir, src, work)}
    if with_torch:
        variants["bertfit torch"] = bertfit_run(model_dir, src, work, engine="torch")
    if window:
        variants[f"bertfit default, window {window}"] = bertfit_run(model_dir, src, work, window=window)
    seconds: dict[str, list[float]] = {k: [] for k in variants}
    seen: dict[str, Any] = {}
    waits = waits_on_tokenizer()
    for _ in range(rounds):
        for label, run in variants.items():
            del waits[:]
            start = time.perf_counter()
            got = run(texts)
            seconds[label].append(time.perf_counter() - start)
            probs, done = got if isinstance(got, tuple) else (got, {})
            seen[label] = (float(np.mean(probs.argmax(1) == reference)), done.get("engine", "torch"),
                           done.get("dtype", "fp32"), waits[:1], waits[1:])  # fmt: skip
    return table(name, len(texts), seconds, seen)


def table(name: str, rows: int, seconds: dict[str, list[float]], seen: dict[str, Any]) -> list[dict[str, Any]]:
    anchor = statistics.median(seconds["a pipeline(64)"])
    out = []
    for label, times in seconds.items():
        cold = label == "bertfit default"
        shown = {f"{label} (first run)": times[:1], f"{label} (remembered)": times[1:]} if cold else {label: times}
        for variant, ts in shown.items():
            if not ts:
                continue
            s = statistics.median(ts)
            agree, engine, dtype, first, later = seen[label]
            out.append({"data": name, "variant": variant, "s": round(s, 2), "rows/s": round(rows / s),
                        "x pipeline": round(anchor / s, 2), "engine": engine, "dtype": dtype,
                        "agrees w/ fp32": f"{agree:.2%}", "wait 1st window s": round(sum(first), 3),
                        "wait later s": round(sum(later), 3)})  # fmt: skip
    return out


def tokenization_rates(threads: list[str], work: Path) -> list[dict[str, Any]]:
    rows = []
    for name, model_dir, path in [("emotion", MODELS / "emotion", work / "emotion.parquet"),
                                  ("yelp", MODELS / "yelp", work / "yelp.parquet")]:  # fmt: skip
        for n in threads:
            env = {**os.environ, "RAYON_NUM_THREADS": n, "TOKENIZERS_PARALLELISM": "true"}
            done = subprocess.run([sys.executable, "-c", TOKENIZE, str(model_dir), str(path)], env=env,
                                  capture_output=True, text=True, check=True)  # fmt: skip
            rows.append({"data": name, "RAYON_NUM_THREADS": n, "texts/s": round(float(done.stdout.split()[-1]))})
    return rows


def main() -> None:
    args = parse_args()
    from machine import machine

    from bertfit.prediction import engine_choice
    from bertfit.prediction.engine_choice import openvino_version

    engine_choice.CONVERT_MIN_ROWS = args.convert_from

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("bertfit.prediction").setLevel(logging.INFO)  # the engine and dtype auto lines
    print(json.dumps({**machine(), "openvino": openvino_version()}))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["BERTFIT_CACHE"] = str(work / "cache")  # empty: the first default run measures and converts
        results = []
        for name, (model_dir, texts) in load_sets(args.rows).items():
            results += compare(name, model_dir, texts, args.rounds, work, args.window, args.torch)
        print(pd.DataFrame(results).to_string(index=False))
        print(pd.DataFrame(tokenization_rates(args.threads.split(","), work)).to_string(index=False))


if __name__ == "__main__":
    main()
