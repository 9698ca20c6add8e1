"""Prediction speed and memory: bertfit's Classifier vs the Hugging Face text-classification pipeline.

One run, one process, variants one after another on the same texts (real emotion tweets and Yelp sentences):

    (a) transformers.pipeline("text-classification", model=DIR, device="cpu"), default batch_size 1; both pipeline
        variants are called with top_k=None, to get every label's probability for the comparison
    (b) the same pipeline with batch_size=64 (the anchor: ratios are against it)
    (c) bertfit Classifier.from_pretrained(DIR, dtype="fp32").predict_proba(texts)
    (d) bertfit default: Classifier.from_pretrained(DIR).predict_proba(texts) (bf16 weights on AMX CPUs)
    (e) bertfit default with compile=True (torch.compile; warm-up timed separately)
    (f...) with --engines onnx,onnx-int8,openvino,openvino-int8: bertfit on each export of the model (`bertfit
        export`, made once into bench/.cache/MODEL-ENGINE and reused while the model folder is unchanged; int8
        with the accuracy gate's figures on the model's validation sample, written even if it fails: --force)

Each prints rows/s, tokens/s (real unpadded tokens incl. [CLS]/[SEP], truncated at the model's max length),
useful GFLOP/s (counted analytically from those tokens: padding is not counted) against a matmul roofline measured
in the same run, label agreement and the largest probability difference. Then tokenization alone, and the peak RSS
of the real `bertfit predict` CLI on 100k and 1M rows (each in its own fresh process).

    python bench/predict.py --model models/emotion
    python bench/predict.py --model /work/exp/models/emotion --yelp-model /work/exp/models/yelp \\
        --gate-models /work/exp/models/sst2 --engines onnx,onnx-int8,openvino,openvino-int8 --no-compile \\
        --emotion-rows 2000 --yelp-rows 2000 --pipeline-rows 500 --skip-rss --budgets ""   # the engine table
    python bench/predict.py --model /work/exp/demo1/emotion-model --pipeline-rows 200 --yelp-rows 1000 \\
        --rss-rows 2000,5000          # a quick check
Without --model, a 1-epoch emotion model is trained once into bench/.cache/emotion-model and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import transformers
from engines import ENGINE_EXPORTS, engine_runs, gate_table, print_gates
from machine import machine

import bertfit
from bertfit.prediction.classifier import Classifier

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CACHE = Path(__file__).resolve().parent / ".cache"
WARMUP_ROWS = 64
ANCHOR = "b"
ROOF_TIMINGS = 15
RSS_WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(json.loads(sys.argv[1]), capture_output=True, text=True)
print(json.dumps({"rc": done.returncode, "wall_s": time.perf_counter() - start, "stdout": done.stdout,
                  "stderr": done.stderr[-2000:], "maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


@dataclass
class Variant:
    key: str
    name: str
    run: Callable[[list[str]], np.ndarray]
    prefix_only: bool = False  # the slow pipeline (a) runs on the first --pipeline-rows texts only
    full_warmup: bool = False  # torch.compile: a whole run as warm-up, timed and reported on its own


# -- setup ---------------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="model folder [train one into bench/.cache]")
    parser.add_argument("--data", type=Path, default=DATA, help=f"data folder [{DATA}]")
    parser.add_argument("--emotion-rows", type=int, default=None, help="first N emotion tweets [all 4,000]")
    parser.add_argument("--yelp-rows", type=int, default=10_000, help="Yelp sentences sampled for the speed runs")
    parser.add_argument("--pipeline-rows", type=int, default=2000, help="prefix of each set that (a) runs on")
    parser.add_argument("--tokenize-rows", type=int, default=50_000, help="Yelp sentences for the tokenizer timing")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per variant; the fastest is reported")
    parser.add_argument("--rss-rows", default="100000,1000000", help="comma-separated row counts for peak RSS")
    parser.add_argument("--skip-rss", action="store_true", help="skip the peak-RSS runs of the CLI")
    parser.add_argument("--rss-only", action="store_true", help="only the peak-RSS runs of the CLI")
    parser.add_argument("--budgets", default="1024,2048,4096,8192", help="--batch-tokens values swept for (d)")
    parser.add_argument("--json-out", type=Path, default=None, help="also write all results here as JSON")
    parser.add_argument("--engines", default="", help="exports to time too: onnx,onnx-int8,openvino,openvino-int8")
    parser.add_argument("--yelp-model", type=Path, default=None, help="model for the Yelp sentences [--model]")
    parser.add_argument(
        "--gate-models",
        default="",
        help="comma-separated model folders whose int8 exports' gate "
        "figures to print too (the timed models' are printed anyway)",
    )
    parser.add_argument("--no-compile", action="store_true", help="leave out (e), torch.compile")
    return parser.parse_args()


def ensure_model(model: Path | None, data: Path) -> Path:
    """The --model folder, or a 1-epoch emotion model trained once into bench/.cache and reused."""
    if model is not None:
        return model
    folder = CACHE / "emotion-model"
    if not (folder / "config.json").exists():
        print(f"training a 1-epoch emotion model into {folder} (once) ...", flush=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        emotion = data / "emotion"
        bertfit.train(train_data=str(emotion / "train.parquet"), output_dir=folder,
                      validation=str(emotion / "validation.parquet"), epochs=1, progress=False)  # fmt: skip
    return folder


def load_sets(data: Path, yelp_rows: int, emotion_rows: int | None = None) -> dict[str, list[str]]:
    emotion = pd.concat([pd.read_parquet(data / "emotion" / f"{s}.parquet") for s in ("test", "validation")])
    yelp = pd.read_parquet(data / "yelp_polarity_sentences" / "test.parquet")
    yelp = yelp.sample(min(yelp_rows, len(yelp)), random_state=0)
    return {"emotion": emotion.text.tolist()[:emotion_rows], "yelp sentences": yelp.text.tolist()}


# -- the variants --------------------------------------------------------------------------------------------------


def pipeline_runner(pipe: Any, labels: list[str], batch_size: int | None) -> Callable[[list[str]], np.ndarray]:
    """Calls the pipeline on the list of texts; top_k=None returns every label's score (for the prob comparison)."""
    kwargs = {"batch_size": batch_size} if batch_size else {}

    def run(texts: list[str]) -> np.ndarray:
        rows = pipe(texts, top_k=None, **kwargs)
        return np.array([[{d["label"]: d["score"] for d in row}[name] for name in labels] for row in rows])

    return run


def make_variants(model_dir: Path, engines: list[str], compile: bool) -> tuple[list[Variant], Classifier]:
    """The variants of one model; returns the default Classifier too (its encoder counts tokens)."""
    fp32 = Classifier.from_pretrained(model_dir, dtype="fp32")
    default = Classifier.from_pretrained(model_dir)
    bf16 = Classifier.from_pretrained(model_dir, dtype="bf16")
    pipe = transformers.pipeline("text-classification", model=str(model_dir), device="cpu")
    variants = [
        Variant("a", "pipeline, batch 1", pipeline_runner(pipe, default.labels, None), prefix_only=True),
        Variant("b", "pipeline, batch 64", pipeline_runner(pipe, default.labels, 64)),
        Variant("c", "bertfit fp32", fp32.predict_proba),
        Variant("d", f"bertfit default ({default.dtype})", default.predict_proba),
        Variant("f", "bertfit --dtype bf16", bf16.predict_proba),
    ]
    if compile:
        compiled = Classifier.from_pretrained(model_dir, compile=True)
        variants.insert(4, Variant("e", f"bertfit default + compile ({compiled.dtype})", compiled.predict_proba,
                                   full_warmup=True))  # fmt: skip
    variants += [Variant(key, name, run) for key, (name, run) in zip("ghijk", engine_runs(model_dir, engines))]
    return variants, default


# -- measuring -----------------------------------------------------------------------------------------------------


def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def useful_flops(lengths: np.ndarray, cfg: dict[str, Any]) -> float:
    """Encoder FLOPs of unpadded texts: per layer 2n(4h^2 + 2hi) for the linears plus 4n^2 h for attention."""
    n = lengths.astype(np.float64)
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    per_layer = 2 * n * (4 * h * h + 2 * h * i) + 4 * n * n * h
    return float(per_layer.sum() * cfg["num_hidden_layers"])


def warm_up(v: Variant, texts: list[str]) -> float | None:
    """A 64-text call; for the compiled variant a whole run (compiling), whose seconds are returned."""
    if v.full_warmup:
        return timed(v.run, texts)[1]
    v.run(texts[:WARMUP_ROWS])
    return None


def speed(seconds: list[float], lengths: np.ndarray, cfg: dict[str, Any], warmup_s: float | None) -> dict[str, Any]:
    best, rows = min(seconds), len(lengths)
    return {"rows": rows, "seconds": best, "all_seconds": seconds, "rows_per_s": rows / best,
            "first_rows_per_s": rows / seconds[0], "tokens_per_s": float(lengths.sum()) / best,
            "gflops_per_s": useful_flops(lengths, cfg) / best / 1e9, "warmup_s": warmup_s}  # fmt: skip


def compare(p: np.ndarray, q: np.ndarray) -> dict[str, float]:
    """Share of equal argmax labels and the largest absolute probability difference, over the common prefix."""
    k = min(len(p), len(q))
    return {"agreement": float((p[:k].argmax(1) == q[:k].argmax(1)).mean()),
            "max_abs_diff": float(np.abs(p[:k] - q[:k]).max()), "rows": k}  # fmt: skip


def bench_set(texts: list[str], variants: list[Variant], clf: Classifier, cfg: dict, args: Any) -> dict[str, Any]:
    """Times every variant `--repeats` times, interleaved so a burst of load elsewhere hits them alike."""
    load_start = os.getloadavg()[0]
    encoded = clf.encoder(texts)
    subsets = {v.key: texts[: args.pipeline_rows] if v.prefix_only else texts for v in variants}
    warmups: dict[str, float | None] = {}
    seconds: dict[str, list[float]] = {v.key: [] for v in variants}
    probas: dict[str, np.ndarray] = {}
    for repeat in range(max(1, args.repeats)):
        for v in variants:
            if repeat == 0:  # warm each variant just before its first run: the first run shows new-shape costs
                print(f"  ({v.key}) {v.name} on {len(subsets[v.key])} rows ...", flush=True)
                warmups[v.key] = warm_up(v, subsets[v.key])
            probas[v.key], run_s = timed(v.run, subsets[v.key])
            seconds[v.key].append(run_s)
    rows = {v.key: {"name": v.name, **speed(seconds[v.key], encoded.lengths[: len(subsets[v.key])], cfg,
                                             warmups[v.key]), "vs_a": compare(probas[v.key], probas["a"])}
            for v in variants}  # fmt: skip
    for r in rows.values():
        r["speedup_vs_anchor"] = r["rows_per_s"] / rows[ANCHOR]["rows_per_s"]
    return {"model": str(clf.model_dir), "rows": len(texts), "tokens": int(encoded.lengths.sum()),
            "truncated": encoded.truncated, "pipeline_rows": len(subsets["a"]), "repeats": len(seconds["a"]),
            "variants": rows,
            "d_vs_c": compare(probas["d"], probas["c"]), "load_avg": [load_start, os.getloadavg()[0]]}  # fmt: skip


def median_time(fn: Callable[[], Any], timings: int = ROOF_TIMINGS, calls: int = 5) -> float:
    for _ in range(3):
        fn()
    samples = []
    for _ in range(timings):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def roofline(cfg: dict[str, Any], rows: int = 2048) -> dict[str, float]:
    """GFLOP/s of F.linear on the model's feed-forward shape, (rows x h) input by (i x h) weight, in bf16 and fp32;
    and GOP/s of torch._int_mm (int8 x int8 -> int32, oneDNN's VNNI/AMX kernels) on the same shape, the ceiling of
    any int8 engine (ONNX Runtime's MatMulInteger measured the same, within 2%, on an AVX-512 EPYC)."""
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    out = {"shape": f"({rows} x {h}) by ({i} x {h})"}
    with torch.inference_mode():
        for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            x, w = torch.randn(rows, h, dtype=dtype), torch.randn(i, h, dtype=dtype)
            seconds = median_time(lambda x=x, w=w: torch.nn.functional.linear(x, w))
            out[name] = 2 * rows * h * i / seconds / 1e9
        a, b = torch.randint(-128, 127, (rows, h), dtype=torch.int8), torch.randint(-128, 127, (h, i), dtype=torch.int8)
        try:
            out["int8"] = 2 * rows * h * i / median_time(lambda: torch._int_mm(a, b)) / 1e9
        except RuntimeError:  # a build without an int8 matmul kernel for this CPU
            out["int8"] = float("nan")
    return out


def best_roofline(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A roofline is a peak: the best of the measurements taken before and after each text set (others' load only
    ever slows it down); every measurement is kept under 'runs'."""
    return {"shape": runs[0]["shape"], **{dt: max(r[dt] for r in runs) for dt in ("bf16", "fp32", "int8")},
            "runs": runs}  # fmt: skip


def budget_sweep(clf: Classifier, sets: dict[str, list[str]], budgets: list[int], repeats: int) -> dict[str, Any]:
    """Rows/s of the default variant at each token budget (fastest of `repeats`, budgets interleaved)."""
    out: dict[str, Any] = {}
    for name, texts in sets.items():
        seconds: dict[int, list[float]] = {b: [] for b in budgets}
        for _ in range(max(1, repeats)):
            for b in budgets:
                seconds[b].append(timed(lambda t, b=b: clf.predict_proba(t, batch_tokens=b), texts)[1])
        out[name] = {str(b): len(texts) / min(seconds[b]) for b in budgets}
    return out


def print_budgets(sweep: dict[str, Any]) -> None:
    budgets = list(next(iter(sweep.values())))
    print("\n## --batch-tokens sweep for (d), rows/s (fastest of the repeats)\n")
    print("| texts | " + " | ".join(budgets) + " |")
    print("|---|" + "--:|" * len(budgets))
    for name, row in sweep.items():
        print(f"| {name} | " + " | ".join(f"{row[b]:,.0f}" for b in budgets) + " |")


def tokenization(clf: Classifier, sets: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Rows/s of bertfit's WindowEncoder vs the plain tokenizer call, best of 3."""
    out = {}
    for name, texts in sets.items():
        encoder = min(timed(clf.encoder, texts)[1] for _ in range(3))
        plain = min(timed(lambda t: clf.tokenizer(t, truncation=True, max_length=clf.max_length), texts)[1]
                    for _ in range(3))  # fmt: skip
        out[name] = {"rows": len(texts), "encoder_rows_per_s": len(texts) / encoder,
                     "tokenizer_rows_per_s": len(texts) / plain}  # fmt: skip
    return out


# -- peak RSS of the CLI -------------------------------------------------------------------------------------------


def rss_input(rows: int, data: Path) -> Path:
    """id + text Parquet of `rows` rows: emotion + all Yelp sentences, shuffled once, repeated; cached."""
    path = CACHE / f"predict-rss-{rows}.parquet"
    if path.exists() and pq.ParquetFile(path).metadata.num_rows == rows:
        return path
    emotion = [pd.read_parquet(data / "emotion" / f"{s}.parquet").text for s in ("test", "validation")]
    yelp = pd.read_parquet(data / "yelp_polarity_sentences" / "test.parquet").text
    pool = pd.concat([*emotion, yelp]).sample(frac=1.0, random_state=0).to_numpy(dtype=object)
    texts = np.resize(pool, rows)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.table({"id": np.arange(rows, dtype=np.int64), "text": texts}), tmp, row_group_size=100_000)
    tmp.rename(path)
    return path


def bertfit_command() -> list[str]:
    script = Path(sys.executable).parent / "bertfit"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from bertfit.cli import main; main()"]


def measure_rss(model_dir: Path, input_path: Path, rows: int) -> dict[str, Any]:
    """Runs `bertfit --quiet predict ... --json` under a fresh wrapper process that reports the child's peak RSS."""
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="rss-out-") as work:
        output = f"{work}/out.parquet"
        cmd = [*bertfit_command(), "--quiet", "predict", str(model_dir), str(input_path), output, "--json"]
        done = subprocess.run([sys.executable, "-c", RSS_WRAPPER, json.dumps(cmd)], capture_output=True, text=True)
    report = json.loads(done.stdout) if done.returncode == 0 and done.stdout else {"rc": done.returncode}
    if report.get("rc") != 0:
        raise RuntimeError(f"bertfit predict on {rows} rows failed: {report.get('stderr') or done.stderr[-2000:]}")
    summary = json.loads(report["stdout"])
    return {"rows": rows, "peak_rss_mib": report["maxrss_kib"] / 1024, "wall_s": report["wall_s"],
            "cli_seconds": summary["seconds"], "cli_rows_per_s": summary["rows_per_s"]}  # fmt: skip


def rss_runs(model_dir: Path, data: Path, sizes: list[int]) -> list[dict[str, Any]]:
    out = []
    for rows in sizes:
        print(f"  peak RSS: bertfit predict on {rows} rows ...", flush=True)
        out.append(measure_rss(model_dir, rss_input(rows, data), rows))
    return out


# -- printing ------------------------------------------------------------------------------------------------------


def print_header(info: dict[str, Any], model_dir: Path, cfg: dict[str, Any]) -> None:
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in info["flags"].items())
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    print(f"# bertfit predict vs transformers pipeline — {info['date']}\n")
    print(f"- command: `{info['command']}`")
    print(f"- CPU: {info['cpu']}; {info['cores']} cores, torch threads {info['torch_threads']}; {flags}")
    print(f"- {versions}")
    print(f"- model: {model_dir} ({cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}, "
          f"intermediate {cfg['intermediate_size']})\n")  # fmt: skip


def print_set(name: str, res: dict[str, Any]) -> None:
    print(f"\n## {name} ({Path(res['model']).name}): {res['rows']} texts, {res['tokens']} tokens "
          f"({res['tokens'] / res['rows']:.1f}/text, {res['truncated']} truncated); "
          f"(a) on the first {res['pipeline_rows']}\n")  # fmt: skip
    start, end = res["load_avg"]
    print(f"Fastest of {res['repeats']} interleaved runs; 'first run' is the first after a {WARMUP_ROWS}-text warm-up "
          f"(for (e): after the compile run). 1-min load average {start:.1f} at start, {end:.1f} at end "
          f"(on {os.cpu_count()} cores: above that, others' work skews the times).\n")  # fmt: skip
    print("| variant | rows | seconds | rows/s | tokens/s | useful GFLOP/s | x pipeline(64) | first run rows/s "
          "| agreement with (a) | max abs Δp vs (a) |")  # fmt: skip
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for key, r in res["variants"].items():
        agree, diff = r["vs_a"]["agreement"], r["vs_a"]["max_abs_diff"]
        print(f"| ({key}) {r['name']} | {r['rows']} | {r['seconds']:.2f} | {r['rows_per_s']:,.0f} | "
              f"{r['tokens_per_s']:,.0f} | {r['gflops_per_s']:.1f} | {r['speedup_vs_anchor']:.2f} | "
              f"{r['first_rows_per_s']:,.0f} | {agree:.4f} | {diff:.2e} |")  # fmt: skip
    dc, e = res["d_vs_c"], res["variants"].get("e")
    compiled = f" (e) compile warm-up (first full run): {e['warmup_s']:.1f} s." if e else ""
    print(f"\n(d) vs (c) on {dc['rows']} rows: label agreement {dc['agreement']:.4f}, max abs Δp "
          f"{dc['max_abs_diff']:.2e}.{compiled}")  # fmt: skip


def variant_dtype(key: str, name: str) -> str | None:
    """The arithmetic a variant runs in, for its share of the roofline: bertfit's own, or an export's from its name."""
    own = {"c": "fp32", "d": "bf16", "e": "bf16", "f": "bf16"}
    if key in own:
        return own[key]
    return next((dt for dt in ("int8", "bf16", "fp32") if dt in name), None)


def print_roofline(roof: dict[str, Any], sets: dict[str, Any]) -> None:
    each = ", ".join(f"{r['bf16']:.0f}/{r['fp32']:.0f}/{r['int8']:.0f}" for r in roof["runs"])
    print(f"\n## Achieved FLOP rate vs matmul roofline\n\nF.linear {roof['shape']} (the feed-forward shape), "
          f"median of {ROOF_TIMINGS} timings, best of {len(roof['runs'])} measurements (bf16/fp32/int8: {each}): "
          f"bf16 {roof['bf16']:.0f} GFLOP/s, fp32 {roof['fp32']:.0f} GFLOP/s, int8 (torch._int_mm) "
          f"{roof['int8']:.0f} GOP/s.")  # fmt: skip
    print("Useful GFLOP/s count only the real tokens of each text (padding not counted), from the analytic formula")
    print("per layer 2n(4h² + 2hi) + 4n²h. 'Ceiling' is the most any variant in that arithmetic could reach against")
    print("the pipeline(64) anchor: the roofline divided by the anchor's useful rate (no padding, no overhead).\n")
    shares = []
    for name, res in sets.items():
        v = res["variants"]
        rows = [(k, variant_dtype(k, v[k]["name"])) for k in v if k not in ("a", "b")]
        parts = [(k, v[k]["gflops_per_s"], 100 * v[k]["gflops_per_s"] / roof[dt], dt) for k, dt in rows if dt]
        shares += [p[2] for p in parts]
        print(f"- {name}: " + "; ".join(f"({k}) {g:.0f} = {pct:.0f}% of {dt}" for k, g, pct, dt in parts))
        anchor = v[ANCHOR]["gflops_per_s"]
        ceilings = ", ".join(f"{dt} {roof[dt] / anchor:.1f}x" for dt in ("fp32", "bf16", "int8"))
        print(f"  ceiling x pipeline(64): {ceilings}")
    if max(shares) > 100:
        print("\nabove 100%: the roofline was measured while others loaded the machine more; rerun when it is quiet")


def print_tokenization(tok: dict[str, Any]) -> None:
    threads = os.environ.get("RAYON_NUM_THREADS") or os.cpu_count()
    print(f"\n## Tokenization alone (best of 3; the Rust tokenizer's pool: {threads} threads)\n")
    print("| texts | rows | WindowEncoder rows/s | tokenizer(...) rows/s | ratio |\n|---|--:|--:|--:|--:|")
    for name, t in tok.items():
        enc, plain = t["encoder_rows_per_s"], t["tokenizer_rows_per_s"]
        print(f"| {name} | {t['rows']} | {enc:,.0f} | {plain:,.0f} | {enc / plain:.2f} |")


def print_rss(runs: list[dict[str, Any]]) -> None:
    print("\n## Peak RSS of `bertfit --quiet predict MODEL IN.parquet OUT.parquet --json` (own process each)\n")
    print("| rows | peak RSS MiB | x smallest | wall s | rows/s (CLI) |\n|--:|--:|--:|--:|--:|")
    for r in runs:
        print(f"| {r['rows']:,} | {r['peak_rss_mib']:,.0f} | {r['peak_rss_mib'] / runs[0]['peak_rss_mib']:.2f} | "
              f"{r['wall_s']:.1f} | {r['cli_rows_per_s']:,.0f} |")  # fmt: skip
    if len(runs) > 1:
        print(f"\nratio {runs[-1]['rows']:,} / {runs[0]['rows']:,} rows: peak RSS "
              f"{runs[-1]['peak_rss_mib'] / runs[0]['peak_rss_mib']:.2f}x")  # fmt: skip


# -- main ----------------------------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    info = machine()
    model_dir = ensure_model(args.model, args.data)
    cfg = json.loads((model_dir / "config.json").read_text())
    sets = load_sets(args.data, args.yelp_rows, args.emotion_rows)
    sizes = [int(s) for s in args.rss_rows.split(",") if s.strip()]
    if args.rss_only:
        print_header(info, model_dir, cfg)
        print_rss(rss_runs(model_dir, args.data, sizes))
        return
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(engines) - set(ENGINE_EXPORTS))
    if unknown:
        raise SystemExit(f"--engines: unknown {', '.join(unknown)} (choose from {', '.join(ENGINE_EXPORTS)})")
    set_models = {"emotion": model_dir, "yelp sentences": args.yelp_model or model_dir}
    made = {m: make_variants(m, engines, not args.no_compile) for m in dict.fromkeys(set_models.values())}
    clf = made[model_dir][1]
    results: dict[str, Any] = {"machine": info, "model": str(model_dir), "sets": {}}
    gates = [Path(m) for m in args.gate_models.split(",") if m.strip()]
    results["gates"] = gate_table(list(dict.fromkeys([*made, *gates])), engines)  # exports first: fail early
    rooflines = [roofline(cfg)]
    for name, texts in sets.items():
        print(f"{name}: {len(texts)} texts", flush=True)
        variants, set_clf = made[set_models[name]]
        set_cfg = json.loads((set_models[name] / "config.json").read_text())
        results["sets"][name] = bench_set(texts, variants, set_clf, set_cfg, args)
        rooflines.append(roofline(cfg))
    results["roofline"] = best_roofline(rooflines)
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    results["budgets"] = budget_sweep(clf, sets, budgets, args.repeats) if budgets else {}
    yelp_all = pd.read_parquet(args.data / "yelp_polarity_sentences" / "test.parquet").text
    tok_sets = {
        "emotion": sets["emotion"],
        "yelp sentences": yelp_all.sample(min(args.tokenize_rows, len(yelp_all)), random_state=0).tolist(),
    }
    results["tokenization"] = tokenization(clf, tok_sets)
    results["rss"] = [] if args.skip_rss else rss_runs(model_dir, args.data, sizes)
    report(results, model_dir, cfg, args.json_out)


def report(results: dict[str, Any], model_dir: Path, cfg: dict[str, Any], json_out: Path | None) -> None:
    print()
    print_header(results["machine"], model_dir, cfg)
    for name, res in results["sets"].items():
        print_set(name, res)
    print_roofline(results["roofline"], results["sets"])
    if results["budgets"]:
        print_budgets(results["budgets"])
    print_tokenization(results["tokenization"])
    if results["gates"]:
        print_gates(results["gates"])
    if results["rss"]:
        print_rss(results["rss"])
    if json_out:
        json_out.write_text(json.dumps(results, indent=2))
        print(f"\nresults written to {json_out}")


if __name__ == "__main__":
    main()
