"""Precision on the CPU at hand: training and prediction in fp32 against bf16 and against what "auto" picks.

train    bertfit.train on an SST-2 sample (random_state 0) for --steps optimizer steps, with --precision fp32,
         bf16 and auto (interleaved, --repeats times; best time kept), then the validation accuracy on SST-2's
         validation.parquet (872 rows) of each last model. Prints seconds per step and the ratios to fp32.
predict  the fp32-trained SST-2 model labels --predict-rows emotion tweets (tweet-length texts) with dtype fp32,
         bf16 and auto (auto on a fresh cache, so it measures; the measuring is inside its time) through
         Classifier.predict_proba; prints texts/s, the ratio to fp32 and the top-label agreement with fp32.

  python bench/precision.py                       # both, 200 steps, 4,000 tweets
  python bench/precision.py --only predict --predict-rows 10000
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import bertfit
from bertfit.modeling import describe_model
from bertfit.prediction.classifier import Classifier

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def train_section(steps: int, repeats: int, work: Path) -> Path:
    train = pd.read_parquet(DATA / "sst2" / "train.parquet").sample(32 * steps, random_state=0)
    best: dict[str, float] = {}
    models: dict[str, Path] = {}
    for _ in range(repeats):
        for precision in ("fp32", "bf16", "auto"):
            out = work / f"train-{precision}"
            start = time.perf_counter()
            bertfit.train(train, out, precision=precision, max_steps=steps, progress=False, cache_dir=work / "c")
            best[precision] = min(best.get(precision, float("inf")), time.perf_counter() - start)
            models[precision] = out
    print(f"\ntraining, {steps} steps of 32 SST-2 rows (whole train() call: tokenizing, checks, validation, saving)")
    print(f"{'precision':<10} {'picked':>7} {'s/step':>8} {'x fp32':>7} {'val acc':>8}")
    for precision, seconds in best.items():
        picked = describe_model(models[precision])["precision"]
        report = bertfit.evaluate(models[precision], DATA / "sst2" / "validation.parquet")
        print(f"{precision:<10} {picked!s:>7} {seconds / steps:8.3f} {best['fp32'] / seconds:7.2f} "
              f"{report['accuracy']:8.4f}")  # fmt: skip
    return models["fp32"]


def predict_section(model: Path, rows: int, repeats: int, work: Path) -> None:
    texts = pd.read_parquet(DATA / "emotion" / "test.parquet")["text"].tolist()
    texts = (texts * (rows // len(texts) + 1))[:rows]
    best: dict[str, float] = {}
    proba: dict[str, np.ndarray] = {}
    picked = "?"
    for r in range(repeats):
        for dtype in ("fp32", "bf16", "auto"):
            os.environ["BERTFIT_CACHE"] = str(work / f"choices-{r}")  # auto measures anew in each repeat
            start = time.perf_counter()
            clf = Classifier.from_pretrained(model, dtype=dtype)
            proba[dtype] = clf.predict_proba(texts)
            best[dtype] = min(best.get(dtype, float("inf")), time.perf_counter() - start)
            picked = clf.dtype if dtype == "auto" else picked
    top = proba["fp32"].argmax(axis=1)
    print(f"\nprediction, {rows} emotion tweets, Classifier.from_pretrained + predict_proba (auto picked {picked})")
    print(f"{'dtype':<6} {'texts/s':>8} {'x fp32':>7} {'agree':>7}")
    for dtype, seconds in best.items():
        agree = float(np.mean(proba[dtype].argmax(axis=1) == top))
        print(f"{dtype:<6} {rows / seconds:8.0f} {best['fp32'] / seconds:7.2f} {agree:7.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["train", "predict"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--predict-rows", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("bertfit.prediction.dtype_choice").setLevel(logging.INFO)  # what auto measured and chose
    flags = open("/proc/cpuinfo").read()
    name = next(line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name"))
    marks = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags.split()]
    print(f"{name}, {os.cpu_count()} cores, flags {' '.join(marks) or 'none'}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = train_section(args.steps, args.repeats, work) if args.only in (None, "train") else None
        if args.only in (None, "predict"):
            if model is None:
                model = work / "model"
                train = pd.read_parquet(DATA / "sst2" / "train.parquet").sample(3200, random_state=0)
                bertfit.train(train, model, precision="fp32", max_steps=100, progress=False)
            predict_section(model, args.predict_rows, args.repeats, work)


if __name__ == "__main__":
    main()
