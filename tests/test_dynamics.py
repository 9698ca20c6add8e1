"""bertfit train --record-dynamics: dynamics.parquet holds one row per usable training row, numbered by its position in
the data as given (dropped rows absent), with the per-epoch probabilities behind its figures; planted label flips
score low; off by default; a continued run gives the uninterrupted run's file; the CLI flag reaches it."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_TRAIN, Stop, sentiment_frame, stop_after
from typer.testing import CliRunner

import bertfit
from bertfit.cli import app
from bertfit.data import io
from bertfit.errors import ConfigError, DataError
from bertfit.modeling import describe_model
from bertfit.training.checkpoints import CommitCheckpoints
from bertfit.training.dynamics import DYNAMICS_FILE

FIGURES = ["confidence", "variability", "correctness", "aum"]


def flipped_frame() -> tuple[pd.DataFrame, list[int], list[int]]:
    """400 learnable rows under a non-default index, 20 of them with the other label, 3 that training drops; the
    planted flips and the dropped rows by position."""
    df = sentiment_frame(400, seed=1)
    flips = sorted(np.random.default_rng(0).choice(np.arange(20, 400), 20, replace=False).tolist())
    swap = {"positive": "negative", "negative": "positive"}
    df.loc[flips, "label"] = df.loc[flips, "label"].map(swap)
    df.loc[[3, 11], "text"] = ["", None]
    df.loc[5, "label"] = None
    df.index = [f"id-{i}" for i in range(len(df))][::-1]
    return df, flips, [3, 5, 11]


def test_dynamics_hold_every_trained_row_by_its_input_position(tiny_model_dir, tmp_path, caplog):
    df, flips, dropped = flipped_frame()
    val = sentiment_frame(80, seed=2)
    out = tmp_path / "model"
    with caplog.at_level(logging.INFO, logger="bertfit"):
        result = bertfit.train(df, out, validation=val, model=str(tiny_model_dir), progress=False,
                               record_dynamics=True, **TINY_TRAIN)  # fmt: skip
    table = pd.read_parquet(out / DYNAMICS_FILE)
    kept = [i for i in range(len(df)) if i not in dropped]
    assert table["row"].tolist() == kept
    given = df.iloc[kept].reset_index(drop=True)
    assert table["text"].tolist() == given["text"].tolist() and table["label"].tolist() == given["label"].tolist()
    epochs = [c for c in table.columns if c.startswith("p_epoch_")]
    assert epochs == [f"p_epoch_{e}" for e in range(1, TINY_TRAIN["epochs"] + 1)]
    assert list(table.columns) == ["row", "text", "label", "split", *FIGURES, *epochs]
    assert (table["split"] == "train").all(), "with --validation every usable row trains"
    assert table["confidence"].between(0, 1).all() and table["correctness"].between(0, 1).all()
    np.testing.assert_allclose(table["confidence"], table[epochs].mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(table["variability"], table[epochs].std(axis=1, ddof=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(table["aum"], result.dynamics.aum)
    flipped = table["row"].isin(flips)
    for figure in ("confidence", "aum", "correctness"):
        low, rest = table.loc[flipped, figure].mean(), table.loc[~flipped, figure].mean()
        assert low < rest, (figure, low, rest)  # confidence 0.29 vs 0.71, AUM -1.2 vs 1.2 on a 2-core EPYC, 2026-12-07
    assert table.loc[flipped, "aum"].mean() < 0 < table.loc[~flipped, "aum"].mean()
    assert "3 rows of the data are not in it (2 with empty text, 1 with missing label)" in caplog.text
    assert describe_model(out)["dynamics"] == {"file": DYNAMICS_FILE, "rows": 397, "epochs": 4}


def test_dynamics_are_off_by_default(tiny_trained):
    assert not (tiny_trained / DYNAMICS_FILE).exists()
    assert "dynamics" not in describe_model(tiny_trained)


def test_sliding_windows_give_one_row_per_document(tiny_model_dir, tmp_path):
    df = sentiment_frame(120, seed=5)
    result = bertfit.train(df, tmp_path / "m", model=str(tiny_model_dir), long="sliding", max_length=8, stride=2,
                           progress=False, record_dynamics=True, **{**TINY_TRAIN, "epochs": 1})  # fmt: skip
    table = pd.read_parquet(tmp_path / "m" / DYNAMICS_FILE)
    assert table["row"].tolist() == list(range(120)) and table["text"].tolist() == df["text"].tolist()
    assert (table["split"] == "validation").sum() == 12 < result.val_rows, "12 whole documents (more windows) split off"
    with pytest.raises(ConfigError, match="one label per row"):
        multi = pd.DataFrame({"text": ["good film", "bad plot"] * 10, "labels": [["a"], ["a", "b"]] * 10})
        bertfit.train(multi, tmp_path / "m2", model=str(tiny_model_dir), label_col="labels", record_dynamics=True)
    assert not (tmp_path / "m2").exists() and not (tmp_path / ".m2.bertfit-work").exists()  # refused before any work
    with pytest.raises(ConfigError, match="column 'split' has the name of a column of dynamics.parquet"):
        bertfit.train(
            df.rename(columns={"text": "split"}),
            tmp_path / "m3",
            text_cols=["split"],
            record_dynamics=True,
            model=str(tiny_model_dir),
        )


def test_a_continued_run_records_what_the_uninterrupted_one_does(tiny_model_dir, tmp_path, monkeypatch):
    """Stopped inside epoch 2 (10 steps per epoch, a checkpoint every 3), then continued: the per-epoch scores of
    epoch 1 come from the checkpoint, and the file is the uninterrupted run's, value for value."""
    data, val = sentiment_frame(160, seed=3), sentiment_frame(40, seed=4)
    kwargs = dict(validation=val, model=str(tiny_model_dir), epochs=2, lr=3e-3, batch_size=16, warmup=0.1,
                  save_every="3", report_to="none", seed=7, precision="fp32", progress=False,
                  record_dynamics=True)  # fmt: skip
    bertfit.train(data, tmp_path / "reference", **kwargs)
    out = tmp_path / "model"
    with monkeypatch.context() as m:
        m.setattr(CommitCheckpoints, "on_save", stop_after(12))
        with pytest.raises(Stop):
            bertfit.train(data, out, **kwargs)
    with pytest.raises(DataError, match=r"record_dynamics true -> false.*--restart"):
        bertfit.train(data, out, **{**kwargs, "record_dynamics": False})
    assert bertfit.train(data, out, **kwargs).resumed_from_step == 12
    reference, resumed = (pd.read_parquet(m / DYNAMICS_FILE) for m in (tmp_path / "reference", out))
    pd.testing.assert_frame_equal(resumed, reference, check_exact=True)


@pytest.mark.usefixtures("restore_cli_state")
def test_the_cli_flag_records_dynamics(tiny_model_dir, tmp_path):
    sentiment_frame(100, seed=6).to_csv(tmp_path / "data.csv", index=False)
    settings = [f"--{k.replace('_', '-')}={v}" for k, v in {**TINY_TRAIN, "epochs": 2}.items()]
    args = ["train", str(tmp_path / "data.csv"), "-o", str(tmp_path / "m"), "--model", str(tiny_model_dir), "--json"]
    result = CliRunner().invoke(app, [*args, *settings, "--record-dynamics"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "m" / DYNAMICS_FILE)
    summary = json.loads(result.stdout)
    assert len(table) == 100 and (table["split"] == "validation").sum() == summary["val_rows"] == 10
    assert [c for c in table.columns if c.startswith("p_epoch_")] == ["p_epoch_1", "p_epoch_2"]


def test_scoring_the_rows_after_each_epoch_shows_a_bar_with_progress_on(tiny_model_dir, tmp_path, capfd):
    df = sentiment_frame(120, seed=6)
    bertfit.train(df, tmp_path / "m", model=str(tiny_model_dir), progress=True, record_dynamics=True,
                  **{**TINY_TRAIN, "epochs": 2})  # fmt: skip
    err = capfd.readouterr().err
    assert "training dynamics, epoch 1" in err and "training dynamics, epoch 2" in err
    assert "dynamics: reading training again" in err  # the rows read again to write dynamics.parquet


def test_dynamics_of_a_sharded_csv_read_in_windows_give_every_value_back(tiny_model_dir, tmp_path, monkeypatch):
    """Written a window at a time (here 64 rows): positions count across shards, texts come back as their CSV
    text (leading zeros, exponents), and the staged parts and lock leave nothing behind in the model folder."""
    monkeypatch.setattr(io, "WINDOW_ROWS", 64)
    df = sentiment_frame(300, seed=4)
    df.loc[[7, 150], "text"] = ["007 great", "1e3 bad"]
    df.loc[200, "label"] = None
    shards = tmp_path / "shards"
    shards.mkdir()
    df.iloc[:170].to_csv(shards / "a.csv", index=False)
    df.iloc[170:].to_csv(shards / "b.csv", index=False)
    out = tmp_path / "model"
    bertfit.train(shards, out, model=str(tiny_model_dir), progress=False, record_dynamics=True,
                  **{**TINY_TRAIN, "epochs": 1})  # fmt: skip
    table = pd.read_parquet(out / DYNAMICS_FILE)
    kept = [i for i in range(len(df)) if i != 200]
    assert table["row"].tolist() == kept
    assert table["text"].tolist() == df["text"].iloc[kept].tolist()
    assert table.loc[table["row"] == 7, "text"].item() == "007 great"
    assert sorted(table["split"].unique()) == ["train", "validation"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
