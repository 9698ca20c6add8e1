"""Does `bertfit tune` beat the defaults? Tune with --trials 20 on emotion (train -> validation only), train once at the
defaults, and compare the two on the validation split (what tune optimised: macro-F1); then score the best trial's
model and the defaults' model once on the test split, for the record (the test split picks nothing).

Same process, one after another: the defaults' run first (its seed is the trials' seed, 42), then the study, with
--keep-best so that the best trial's model is scored on test without training it again. The study continues when
the same command runs again (OUT/tune.db), so an interrupted benchmark loses at most one trial.

    python bench/tune.py --trials 20                                  # the benchmark (hours on a 2-core CPU)
    python bench/tune.py --trials 2 --rows 400 --val-rows 400 --epochs 1 --out /tmp/tune-check   # a quick check
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
import transformers
from machine import machine

import bertfit

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "emotion"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--time-budget", default=None, help="no new trial after this long, e.g. 6h")
    parser.add_argument("--rows", type=int, default=0, help="training rows drawn from emotion train [0: all 16,000]")
    parser.add_argument("--val-rows", type=int, default=0, help="validation rows drawn [0: all 2,000]")
    parser.add_argument("--epochs", type=float, default=None, help="fix the epochs (a quick check) [searched]")
    parser.add_argument("--out", type=Path, default=None, help="folder for the study and models [a temporary one]")
    parser.add_argument("--seed", type=int, default=0, help="which rows --rows and --val-rows draw")
    return parser.parse_args()


def scores(model_dir: Path, data: Path) -> dict[str, float]:
    report = bertfit.evaluate(model_dir, data)
    return {"accuracy": float(report["accuracy"]), "macro_f1": float(report["macro_f1"])}


def drawn(split: str, rows: int, seed: int, folder: Path) -> Path:
    """The split as a file, or `rows` of it drawn at random (written into `folder`)."""
    if not rows:
        return DATA / f"{split}.parquet"
    path = folder / f"{split}-{rows}-seed{seed}.parquet"
    pd.read_parquet(DATA / f"{split}.parquet").sample(n=rows, random_state=seed).to_parquet(path, index=False)
    return path


def run(args: argparse.Namespace, out: Path) -> list[dict]:
    train = drawn("train", args.rows, args.seed, out)
    val = drawn("validation", args.val_rows, args.seed, out)
    test = DATA / "test.parquet"
    fixed = {"epochs": args.epochs} if args.epochs else {}

    started = time.perf_counter()
    defaults = bertfit.train(train, out / "defaults", validation=val, progress=False, **fixed)
    default_seconds = time.perf_counter() - started
    started = time.perf_counter()
    tuned = bertfit.tune(train, out / "tune", validation=val, trials=args.trials, time_budget=args.time_budget,
                         keep_best=True, progress=False, **fixed)  # fmt: skip
    tune_seconds = time.perf_counter() - started
    if tuned.best_model is None:
        raise SystemExit("no trial completed; nothing to compare")
    trials = ", ".join(f"{n} {state}" for state, n in tuned.counts.items())
    return [
        {"run": "defaults", "val_macro_f1": defaults.metrics["macro_f1"], "val_accuracy": defaults.metrics["accuracy"],
         **{f"test_{k}": v for k, v in scores(defaults.model_dir, test).items()}, "seconds": round(default_seconds)},
        {"run": f"tune: trial {tuned.best_trial} ({trials})", "val_macro_f1": tuned.best_value,
         "val_accuracy": json.loads((tuned.best_model / "metrics.json").read_text())["accuracy"],
         **{f"test_{k}": v for k, v in scores(tuned.best_model, test).items()}, "seconds": round(tune_seconds)},
    ]  # fmt: skip


def main() -> None:
    args = parse_args()
    transformers.logging.set_verbosity_error()  # no load report for each trial's new classifier head
    print(json.dumps(machine()))
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        rows = run(args, out)
        best = load_best(out / "tune" / "best.yaml")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4f"))
    print(f"best configuration: {json.dumps(best)}")
    gain = rows[1]["val_macro_f1"] - rows[0]["val_macro_f1"]
    print(f"validation macro-F1, tune's best minus defaults: {gain:+.4f}")


def load_best(path: Path) -> dict:
    cfg = bertfit.load_config(path).train
    return {k: getattr(cfg, k) for k in ("lr", "epochs", "batch_size", "warmup", "weight_decay", "scheduler",
                                         "class_weights")}  # fmt: skip


if __name__ == "__main__":
    main()
