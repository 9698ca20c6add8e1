"""Reading speed: bertfit's value-exact readers (every CSV/TSV field as its text, JSON Lines pass-through columns as
raw JSON, with line accounting) against pandas' readers (which re-type values), in the same run, on real Yelp
sentences with a 19-digit id column, read in windows of 50,000 rows as prediction reads them.

    python bench/read.py --data ../shared/data --rows 500000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from machine import machine

from bertfit.data.io import iter_frames

WINDOW = 50_000


def make_inputs(data: Path, rows: int, folder: Path) -> dict[str, Path]:
    yelp = pd.read_parquet(data / "yelp_polarity_sentences" / "test.parquet")
    df = pd.concat([yelp] * (rows // len(yelp) + 1), ignore_index=True).head(rows)
    df.insert(0, "id", (np.arange(rows) + 1_234_567_890_123_456_789).astype(str))
    paths = {"csv": folder / "in.csv", "tsv": folder / "in.tsv", "jsonl": folder / "in.jsonl"}
    df.to_csv(paths["csv"], index=False)
    with open(paths["tsv"], "w", encoding="utf-8") as fh:  # unquoted, as most tools write TSV
        fh.write("\t".join(df.columns) + "\n")
        fh.writelines("\t".join(r) + "\n" for r in df.astype(str).itertuples(index=False))
    df.assign(id=df["id"].astype("int64")).to_json(paths["jsonl"], orient="records", lines=True)
    return paths


def bertfit_rows(path: Path) -> int:
    return sum(len(f) for f in iter_frames(path, WINDOW, ["text"], passthrough=True))


def pandas_rows(path: Path) -> int:
    if path.suffix == ".jsonl":
        with pd.read_json(path, lines=True, dtype=False, chunksize=WINDOW) as chunks:
            return sum(len(c) for c in chunks)
    sep = "\t" if path.suffix == ".tsv" else ","
    with pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, chunksize=WINDOW) as chunks:
        return sum(len(c) for c in chunks)


def timed(fn, path: Path) -> tuple[int, float]:
    started = time.perf_counter()
    rows = fn(path)
    return rows, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = {"machine": machine(), "rows": args.rows, "formats": {}}
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_inputs(args.data, args.rows, Path(tmp))
        print(f"{'format':6} {'bertfit rows/s':>15} {'pandas rows/s':>14} {'bertfit/pandas':>15}")
        for fmt, path in paths.items():
            ours, theirs = [], []
            for _ in range(args.repeats):  # interleaved, so that a noisy neighbour hits both alike
                rows, seconds = timed(bertfit_rows, path)
                ours.append(rows / seconds)
                rows_pd, seconds_pd = timed(pandas_rows, path)
                theirs.append(rows_pd / seconds_pd)
                assert rows == rows_pd == args.rows, (fmt, rows, rows_pd)
            best, best_pd = max(ours), max(theirs)
            results["formats"][fmt] = {"bertfit_rows_per_s": round(best), "pandas_rows_per_s": round(best_pd)}
            print(f"{fmt:6} {best:15,.0f} {best_pd:14,.0f} {best / best_pd:15.2f}")
    print(json.dumps(results["machine"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
