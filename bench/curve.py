"""Learning-curve forecast (issue 18): does `bertfit.learning_curve`, fitted on 12.5%, 25% and 50% of a training
set, forecast the score that training on all of it then measures?

1. `learning_curve(train, validation, fractions=(0.125, 0.25, 0.5))` at bertfit's defaults (three seeds below 50%,
   as the function does): the fit's forecast and band at the full size.
2. The same call with fraction 1 added, into the same folder: the seven runs are reused from curve.json and only
   the full set is trained; its validation score is the measured one.
Printed: every run's rows, scores and seconds, the forecast, the band, the measurement and whether it fell in the
band. The models are not kept.

    python bench/curve.py --dataset emotion
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd
from machine import machine

import bertfit

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="emotion", help="a folder of ../shared/data with train and validation")
    parser.add_argument("--metric", default="macro_f1", choices=["macro_f1", "accuracy"])
    parser.add_argument("--output", type=Path, default=None, help="keep curve.json and curve.png here [a temp dir]")
    parser.add_argument("--max-steps", type=int, default=0, help="cap each training (a quick try) [0: defaults]")
    parser.add_argument("--train-rows", type=int, default=None, help="sample the training set to this")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    print(json.dumps(machine()))
    train = pd.read_parquet(DATA / args.dataset / "train.parquet")[["text", "label"]]
    if args.train_rows:
        train = train.sample(args.train_rows, random_state=0).reset_index(drop=True)
    validation = pd.read_parquet(DATA / args.dataset / "validation.parquet")[["text", "label"]]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.output or Path(tmp) / "curve"
        started = time.time()
        fitted = bertfit.learning_curve(train, validation, out, fractions=(0.125, 0.25, 0.5), metric=args.metric,
                                        max_steps=args.max_steps)  # fmt: skip
        fit_s = time.time() - started
        full = bertfit.learning_curve(train, validation, out, fractions=(0.125, 0.25, 0.5, 1.0), metric=args.metric,
                                      max_steps=args.max_steps)  # fmt: skip
    print(pd.DataFrame(full["points"]).to_markdown(index=False))
    forecast = next(f for f in fitted["fit"]["forecasts"] if f["train_rows"] == len(train))
    measured = next(p[args.metric] for p in full["points"] if p["fraction"] == 1.0)
    inside = forecast["low"] <= measured <= forecast["high"]
    print(f"\n{args.dataset}: fitted on 12.5/25/50% ({fit_s:.0f} s): {args.metric} at {len(train)} rows forecast "
          f"{forecast['expected']:.4f}, band {forecast['low']:.4f}-{forecast['high']:.4f}; measured {measured:.4f} "
          f"({'inside' if inside else 'OUTSIDE'} the band; error {measured - forecast['expected']:+.4f})")  # fmt: skip
    print(f"the fitted call's answer: {fitted['answer']}")


if __name__ == "__main__":
    main()
