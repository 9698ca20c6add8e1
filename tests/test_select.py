"""`bertfit select`: the rows picked are the most uncertain ones, every input column comes back as given, empty
texts are never picked, and user errors are one line with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import sentiment_frame
from typer.testing import CliRunner

import bertfit
from bertfit.cli import app
from bertfit.errors import ConfigError, DataError
from bertfit.reviewing.select import entropy, margin

pytestmark = pytest.mark.usefixtures("restore_cli_state")
PREDICTIONS = ["pred_label", "pred_score", "prob_negative", "prob_positive"]


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 texts with an id column written as '007'-style text, a price column '1.50', and one empty text (row 5)."""
    frame = sentiment_frame(60, seed=7).drop(columns="label")
    frame.insert(0, "id", [f"{i:03d}" for i in range(len(frame))])
    frame["price"] = [f"{i % 7}.50" for i in range(len(frame))]
    frame.loc[5, "text"] = "   "
    path = tmp_path_factory.mktemp("pool") / "pool.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def proba(tiny_trained: Path, pool: Path) -> np.ndarray:
    """The pool's probabilities, scored one list in memory (the reference the streamed selection must match)."""
    clf = bertfit.Classifier.from_pretrained(tiny_trained, dtype="fp32")
    return clf.predict_proba(pd.read_csv(pool, dtype=str, keep_default_na=False)["text"].tolist())


def read_text(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_margin_picks_the_most_uncertain_rows_and_keeps_every_column(
    tiny_trained: Path, pool: Path, proba: np.ndarray, tmp_path: Path
) -> None:
    out = tmp_path / "to_label.csv"
    summary = bertfit.select(tiny_trained, pool, out, n=10, strategy="margin", dtype="fp32")
    picked = read_text(out)
    gaps = np.abs(proba[:, 0] - proba[:, 1])
    expected = [int(i) for i in np.argsort(gaps, kind="stable") if not np.isnan(gaps[i])][:10]
    assert picked["row"].astype(int).tolist() == expected
    assert list(picked.columns) == ["id", "text", "price", "row", "margin", *PREDICTIONS]
    given = read_text(pool)
    for col in ("id", "text", "price"):  # byte for byte as the pool gave them: '007' stays '007', '1.50' stays
        assert picked[col].tolist() == given[col].iloc[expected].tolist()
    assert np.allclose(picked["margin"].astype(float), gaps[expected], atol=1e-5)
    assert summary == {"pool_rows": 60, "usable_rows": 59, "picked": 10, "empty_text": 1, "strategy": "margin",
                       "output": str(out)}  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["to_label.csv"]  # no scores file or parts left behind


def test_entropy_random_and_diverse(tiny_trained: Path, pool: Path, proba: np.ndarray, tmp_path: Path) -> None:
    bertfit.select(tiny_trained, pool, tmp_path / "e.parquet", n=8, strategy="entropy", dtype="fp32")
    by_entropy = pd.read_parquet(tmp_path / "e.parquet")
    assert by_entropy["row"].tolist() == np.argsort(-entropy(proba, False), kind="stable")[:8].tolist()
    assert by_entropy["id"].tolist() == [f"{r:03d}" for r in by_entropy["row"]]  # CSV text stays text in Parquet

    runs = [(0, "r0.csv"), (0, "r0b.csv"), (1, "r1.csv")]
    for seed, name in runs:
        bertfit.select(tiny_trained, pool, tmp_path / name, n=12, strategy="random", seed=seed, dtype="fp32")
    rows = {name: read_text(tmp_path / name)["row"].astype(int).tolist() for _, name in runs}
    assert rows["r0.csv"] == rows["r0b.csv"] and rows["r0.csv"] != rows["r1.csv"]
    assert 5 not in rows["r0.csv"] + rows["r1.csv"] and len(set(rows["r0.csv"])) == 12

    bertfit.select(tiny_trained, pool, tmp_path / "d.csv", n=6, strategy="diverse", diverse_factor=3, dtype="fp32")
    diverse = read_text(tmp_path / "d.csv")
    gaps = np.abs(proba[:, 0] - proba[:, 1])
    candidates = [int(i) for i in np.argsort(gaps, kind="stable") if not np.isnan(gaps[i])][:18]
    chosen = diverse["row"].astype(int).tolist()
    assert len(set(chosen)) == 6 and set(chosen) <= set(candidates) and chosen[0] == candidates[0]
    distances = diverse["coverage_distance"].replace("", "nan").astype(float).to_numpy()
    assert np.isnan(distances[0]) and np.all(distances[1:] >= 0)
    assert np.all(np.diff(distances[1:]) <= 1e-6)  # k-center greedy: each pick is no farther than the one before


def test_more_than_the_pool_gives_every_usable_row(tiny_trained: Path, pool: Path, tmp_path: Path) -> None:
    summary = bertfit.select(tiny_trained, pool, tmp_path / "all.csv", n=1000, dtype="fp32")
    rows = read_text(tmp_path / "all.csv")["row"].astype(int)
    assert summary["picked"] == 59 and sorted(rows) == [r for r in range(60) if r != 5]


def test_multilabel_margin_and_entropy_are_per_label_distances_to_one_half() -> None:
    proba = np.array([[0.5, 0.9], [0.1, 0.2], [np.nan, np.nan]])
    assert np.allclose(margin(proba, True)[:2], [0.0, 0.6]) and np.isnan(margin(proba, True)[2])
    assert entropy(proba, True)[0] > entropy(proba, True)[1]
    assert np.allclose(margin(np.array([[0.7, 0.2, 0.1]]), False), [0.5])


def test_user_errors_write_nothing(tiny_trained: Path, pool: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--n must be at least 1"):
        bertfit.select(tiny_trained, pool, tmp_path / "x.csv", n=0)
    with pytest.raises(ConfigError, match="--strategy must be one of"):
        bertfit.select(tiny_trained, pool, tmp_path / "x.csv", strategy="smallest")
    blank = tmp_path / "blank.csv"
    read_text(pool).assign(text="").to_csv(blank, index=False)
    with pytest.raises(DataError, match="every row's text .'text'. is empty"):
        bertfit.select(tiny_trained, blank, tmp_path / "x.csv", n=3)
    clash = tmp_path / "clash.csv"
    read_text(pool).assign(row="1").to_csv(clash, index=False)
    with pytest.raises(DataError, match="already has a column 'row'"):
        bertfit.select(tiny_trained, clash, tmp_path / "x.csv", n=3)
    result = CliRunner().invoke(app, ["select", str(tiny_trained), str(pool), "-o", str(tmp_path / "y.csv"),
                                      "--n", "3", "--text-col", "body"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "'body'" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blank.csv", "clash.csv"]


def test_multilabel_model_picks_the_labels_nearest_one_half(tiny_model_dir: Path, pool: Path, tmp_path: Path) -> None:
    """A multi-label folder with random weights (its classifier scaled up so that the scores spread around 0.5)."""
    import json

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(3)
    folder = tmp_path / "multi"
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=3, problem_type="multi_label_classification",
        id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2},
    )  # fmt: skip
    with torch.no_grad():
        model.classifier.weight.mul_(40.0)
    model.save_pretrained(folder)
    meta = {"labels": {"names": ["a", "b", "c"], "problem_type": "multi_label_classification", "label_sep": ","},
            "data": {"text_cols": ["text"], "max_length": 128}}  # fmt: skip
    (folder / "bertfit.json").write_text(json.dumps(meta))
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    clf = bertfit.Classifier.from_pretrained(folder, dtype="fp32")
    proba = clf.predict_proba(read_text(pool)["text"].tolist())
    assert clf.schema.multi_label and np.nanstd(proba) > 0.05
    out = tmp_path / "picked.csv"
    bertfit.select(folder, pool, out, n=7, dtype="fp32")
    picked = read_text(out)
    gaps = np.abs(2 * proba - 1).min(axis=1)
    expected = [int(i) for i in np.argsort(gaps, kind="stable") if not np.isnan(gaps[i])][:7]
    assert picked["row"].astype(int).tolist() == expected
    assert list(picked.columns) == ["id", "text", "price", "row", "margin", "pred_labels", "prob_a", "prob_b", "prob_c"]


def test_a_killed_run_resumes_its_scoring(
    tiny_trained: Path, pool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A pool of two shards is scored in two committed parts; a run killed after the first resumes after it."""
    shards = tmp_path / "pool"
    shards.mkdir()
    given = read_text(pool)
    given.iloc[:30].to_parquet(shards / "a.parquet")
    given.iloc[30:].to_parquet(shards / "b.parquet")
    whole = tmp_path / "whole.csv"
    bertfit.select(tiny_trained, shards, whole, n=9, dtype="fp32")

    original = bertfit.Classifier.predict_stream

    def killed_after_one(self, *args, **kwargs):
        stream = original(self, *args, **kwargs)
        yield next(stream)
        raise KeyboardInterrupt

    out = tmp_path / "resumed.csv"
    monkeypatch.setattr(bertfit.Classifier, "predict_stream", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        bertfit.select(tiny_trained, shards, out, n=9, dtype="fp32")
    assert not out.exists()
    monkeypatch.undo()
    with caplog.at_level("WARNING"):
        bertfit.select(tiny_trained, shards, out, n=9, dtype="fp32")
    assert "resuming after 30 committed rows" in caplog.text
    assert out.read_bytes() == whole.read_bytes()


def test_json_lines_values_come_back_as_the_same_json(tiny_trained: Path, tmp_path: Path) -> None:
    frame = sentiment_frame(12, seed=3).drop(columns="label")
    lines = [
        json.dumps({"id": i, "text": text, "meta": {"price": 1.5, "tags": ["a", i]} if i % 2 else None})
        for i, text in enumerate(frame["text"])
    ]
    lines[5] = lines[5].replace('"price": 1.5', '"price": 1.50')  # written back byte for byte, not re-encoded
    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join(lines) + "\n")
    out = tmp_path / "picked.jsonl"
    bertfit.select(tiny_trained, pool, out, n=12, dtype="fp32")
    picked = [json.loads(line) for line in out.read_text().splitlines()]
    given = [json.loads(line) for line in lines]
    assert [{k: p[k] for k in ("id", "text", "meta")} for p in picked] == [given[p["row"]] for p in picked]
    assert '"meta":{"price": 1.50, ' in out.read_text()
