"""Seed 003, end to end, as its author ran it: Yelp polarity as a headerless `label,text` CSV with labels 1/2,
`--label-map '1=negative,2=positive'`, max length 128, one epoch, bertfit's defaults otherwise; train, evaluate
(MCC) and predict through the CLI on real Yelp sentences from ../shared/data/yelp_polarity_sentences."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import SHARED_DATA
from typer.testing import CliRunner

from bertfit.cli import app

YELP = SHARED_DATA / "yelp_polarity_sentences"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not YELP.is_dir(), reason="needs ../shared/data/yelp_polarity_sentences"),
    pytest.mark.usefixtures("restore_cli_state"),
]
STARS = {"negative": "1", "positive": "2"}  # the Yelp Review Polarity files' classes


def headerless_csv(split: str, n: int, path: Path) -> pd.DataFrame:
    """n real rows written as the Yelp polarity files are: no header, the class (1/2), then the quoted text."""
    df = pd.read_parquet(YELP / f"{split}.parquet").sample(n, random_state=3).reset_index(drop=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(zip(df["label"].map(STARS), df["text"]))
    return df


def test_yelp_seed_recipe_trains_evaluates_and_predicts(tmp_path: Path) -> None:
    runner = CliRunner()
    headerless_csv("validation", 2000, tmp_path / "train.csv")
    test = headerless_csv("test", 2000, tmp_path / "test.csv")
    cols, label_map = ["--columns", "label,text"], ["--label-map", "1=negative,2=positive"]

    args = ["train", tmp_path / "train.csv", "-o", tmp_path / "yelp", *cols, *label_map, "--max-length", "128",
            "--epochs", "1", "--json"]  # fmt: skip
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["labels"] == ["negative", "positive"]

    args = ["evaluate", tmp_path / "yelp", tmp_path / "test.csv", *cols, "--json"]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    print(f"Yelp seed recipe, 2,000 rows, 1 epoch: test MCC {report['mcc']:.4f}, accuracy {report['accuracy']:.4f}")
    assert report["n"] == 2000
    # 2,000 training rows: MCC 0.848 and 0.843 (accuracy 0.927, 0.9255) for the rows of random_state 3 and 4 on a 2-core
    # AVX-512 EPYC, fp32, 2026-12-06, in 29 s of training; 4,000 rows gave 0.875 (0.940) in twice the time; in
    # bf16 (precision auto on AVX512-BF16) 0.855 (0.931) for random_state 3
    assert report["mcc"] >= 0.80

    test[["text"]].to_csv(tmp_path / "new.csv", header=False, index=False)
    args = ["predict", tmp_path / "yelp", tmp_path / "new.csv", tmp_path / "out.csv", "--columns", "text"]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "out.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["text", "pred_label", "pred_score"] and len(rows) == 2001
    assert [r[0] for r in rows[1:]] == test["text"].tolist()  # the first row is a review, not a header
    agree = sum(r[1] == label for r, label in zip(rows[1:], test["label"])) / 2000
    assert abs(agree - report["accuracy"]) < 1e-9
