"""Active learning, simulated (issue 18): does `bertfit select` reach a random pick's score with fewer labels?

From --start labelled rows of a training set (a stratified-free random sample, the same for every strategy of a
seed), each round trains a model at bertfit's defaults on the rows labelled so far, scores it on the test split
(macro-F1), and asks `bertfit.select` for --step more rows of the rest of the training set (the pool, its labels
hidden from select and revealed afterwards, as an annotator would). --rounds rounds of picking; the last model is
scored too. Strategies: random, margin, entropy, diverse; seeds give different starting rows and random picks.

Printed per strategy and seed: labels and test macro-F1 after each round; then the labels each strategy needed to
reach random's final macro-F1 (linear interpolation between rounds; "not reached" where it never did), and the
saving against random's label count.

    python bench/active.py --dataset emotion --strategies random,margin,diverse --seeds 0 --points emotion-0.jsonl
    python bench/active.py --summarise emotion-*.jsonl     # the tables of several runs (seeds run in parallel)
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from machine import machine

import bertfit

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def simulate(train: pd.DataFrame, test: pd.DataFrame, strategy: str, seed: int, args: argparse.Namespace,
             work: Path) -> list[dict]:  # fmt: skip
    """One strategy, one seed: the (labels, macro-F1) after every round."""
    rng = np.random.default_rng(seed)
    labelled = set(rng.choice(len(train), args.start, replace=False).tolist())
    points = []
    for round_ in range(args.rounds + 1):
        started = time.time()
        model = work / (f"start-{seed}" if round_ == 0 else f"{strategy}-{seed}-{round_}")  # one start per seed
        if not model.is_dir():
            rows = train.iloc[sorted(labelled)]
            bertfit.train(rows, model, seed=seed, progress=False, max_steps=args.max_steps)
        report = bertfit.evaluate(model, test)
        point = {"strategy": strategy, "seed": seed, "round": round_, "labels": len(labelled),
                 "macro_f1": round(report["macro_f1"], 4), "accuracy": round(report["accuracy"], 4)}  # fmt: skip
        if round_ < args.rounds:
            pool_rows = np.array(sorted(set(range(len(train))) - labelled))
            pool = work / f"pool-{strategy}-{seed}-{round_}.parquet"
            train.iloc[pool_rows][["text"]].to_parquet(pool, index=False)  # the labels stay hidden
            picks = work / f"picks-{strategy}-{seed}-{round_}.parquet"
            bertfit.select(model, pool, picks, n=args.step, strategy=strategy, seed=seed)
            labelled |= set(pool_rows[pd.read_parquet(picks)["row"].to_numpy()].tolist())
        point["seconds"] = round(time.time() - started, 1)
        points.append(point)
        print(json.dumps(point), flush=True)
        if args.points:  # each round as it ends, so that a stopped run keeps what it measured
            with args.points.open("a") as out:
                out.write(json.dumps(point) + "\n")
    return points


def labels_to_reach(curve: pd.DataFrame, target: float) -> float | None:
    """Labels at which a curve (labels ascending) first reaches `target`, interpolated between rounds."""
    labels, scores = curve["labels"].to_numpy(float), curve["macro_f1"].to_numpy(float)
    for i, score in enumerate(scores):
        if score >= target:
            if i == 0:
                return float(labels[0])
            share = (target - scores[i - 1]) / (score - scores[i - 1])
            return float(labels[i - 1] + share * (labels[i] - labels[i - 1]))
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="emotion", help="a folder of ../shared/data with train and test")
    parser.add_argument("--start", type=int, default=200, help="labelled rows to begin with")
    parser.add_argument("--step", type=int, default=200, help="rows picked per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--strategies", default="random,margin,entropy,diverse")
    parser.add_argument(
        "--seeds", default="0,1,2", help="the seeds, comma-separated (one process per seed can run in parallel)"
    )
    parser.add_argument("--points", type=Path, help="also write every point here (JSON lines)")
    parser.add_argument(
        "--summarise",
        nargs="+",
        type=Path,
        metavar="POINTS",
        help="train nothing: print the tables of points files written by earlier runs",
    )
    parser.add_argument("--train-rows", type=int, default=None, help="sample the training set (the pool) to this")
    parser.add_argument("--max-steps", type=int, default=0, help="cap each training (a quick try) [0: defaults]")
    args = parser.parse_args()
    if args.summarise:
        points = [json.loads(line) for path in args.summarise for line in path.read_text().splitlines() if line]
        summarise(pd.DataFrame(points), args.dataset)
        return
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    print(json.dumps(machine()))
    seeds = [int(seed) for seed in args.seeds.split(",")]
    train = pd.read_parquet(DATA / args.dataset / "train.parquet")[["text", "label"]]
    if args.train_rows:
        train = train.sample(args.train_rows, random_state=0)
    train = train.reset_index(drop=True)
    test = pd.read_parquet(DATA / args.dataset / "test.parquet")[["text", "label"]]
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for strategy in args.strategies.split(","):
                points += simulate(train, test, strategy, seed, args, Path(tmp))
    summarise(pd.DataFrame(points), args.dataset)


def summarise(table: pd.DataFrame, dataset: str) -> None:
    """The mean curve of each strategy over its seeds, and the labels each needed to reach random's final score (and,
    stricter where random's curve is noisy, random's best round)."""
    for metric in ("macro_f1", "accuracy"):
        wide = table.pivot_table(index=["labels"], columns="strategy", values=metric, aggfunc="mean")
        print(f"\nmean test {metric} over the seeds, {dataset}:\n" + wide.round(4).to_markdown())
    finals = table[table["round"] == table["round"].max()].groupby("strategy")["macro_f1"]
    spreads = [f"{name} {f.mean():.4f} ({f.min():.4f}-{f.max():.4f}, {len(f)} seeds)" for name, f in finals]
    print("\nfinal macro-F1 per strategy: " + "; ".join(spreads))
    mean = table.groupby(["strategy", "round"], as_index=False)[["labels", "macro_f1"]].mean()
    random = mean[mean.strategy == "random"].sort_values("round")
    if random.empty:
        print("\nno random runs among the points: nothing to compare the strategies with")
        return
    final_labels = float(random["labels"].iloc[-1])
    for what, target in (("final", float(random["macro_f1"].iloc[-1])), ("best", float(random["macro_f1"].max()))):
        print(f"\nrandom's {what} mean macro-F1: {target:.4f}; labels to reach it (against {final_labels:.0f}):")
        for strategy, curve in mean.groupby("strategy"):
            needed = labels_to_reach(curve.sort_values("labels"), target)
            saving = "" if needed is None else f" ({1 - needed / final_labels:.0%} fewer)"
            print(f"- {strategy}: {'not reached' if needed is None else f'{needed:.0f} labels'}{saving}")
    print("\nper seed, labels to reach that seed's random final (and best) macro-F1:")
    for seed, runs in table.groupby("seed"):
        random = runs[runs.strategy == "random"].sort_values("round")
        if random.empty:
            continue
        final, best = float(random["macro_f1"].iloc[-1]), float(random["macro_f1"].max())
        reached = []
        for strategy, curve in runs.groupby("strategy"):
            needed = [labels_to_reach(curve.sort_values("labels"), target) for target in (final, best)]
            reached.append(f"{strategy} " + " / ".join("-" if n is None else f"{n:.0f}" for n in needed))
        print(f"- seed {seed} (random: final {final:.4f}, best {best:.4f}): " + "; ".join(reached))


if __name__ == "__main__":
    main()
