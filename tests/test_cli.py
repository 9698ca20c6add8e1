"""The `bertfit` command: user errors are one line on stderr with exit code 2 and write nothing; every format
round-trips through train -> predict; info, evaluate and --help work."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import Result
from conftest import FILLER, NEGATIVE, POSITIVE, sentiment_frame
from typer.testing import CliRunner

from bertfit.cli import app
from bertfit.data.io import read_table
from bertfit.data.write import write_table
from bertfit.errors import DataError

FAST = ["--epochs", "2", "--lr", "3e-3", "--batch-size", "16"]
LABELS = ["negative", "positive"]
PRED_COLUMNS = ["pred_label", "pred_score"]
PROB_COLUMNS = [f"prob_{name}" for name in LABELS]
LABEL_MAP = "1=negative,2=positive"

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("restore_cli_state")


def invoke(*args: object) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def labelled(n: int = 40, seed: int = 0) -> pd.DataFrame:
    df = sentiment_frame(n, seed)
    df.insert(0, "id", range(1000 + n, 1000, -1))  # descending: order must survive, not be re-sorted
    return df


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under a folder, hidden ones included, with the bytes of files."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


def assert_user_error(result: Result, *fragments: str) -> str:
    """Exit 2; one 'error:' line on stderr holding every fragment; no traceback; nothing on stdout."""
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    return errors[0]


def train_cmd(data: Path, out: Path, model_dir: Path, *extra: object) -> list[object]:
    return ["train", data, "--output", out, "--model", model_dir, *FAST, *extra]


def csv_file(folder: Path, name: str, df: pd.DataFrame) -> Path:
    path = folder / name
    df.to_csv(path, index=False)
    return path


# User errors in `bertfit train`: message, exit code 2, and nothing written.


def test_train_missing_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    before = snapshot(tmp_path)
    result = invoke(*train_cmd(tmp_path / "nowhere.csv", tmp_path / "model", tiny_model_dir))
    assert_user_error(result, str(tmp_path / "nowhere.csv"), "not found")
    assert snapshot(tmp_path) == before


def test_train_unknown_extension(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = tmp_path / "reviews.docx"
    data.write_bytes(b"PK\x03\x04 a word document")
    before = snapshot(tmp_path)
    result = invoke(*train_cmd(data, tmp_path / "model", tiny_model_dir))
    assert_user_error(result, str(data), ".docx", ".csv", ".xlsx")
    assert snapshot(tmp_path) == before


def test_train_missing_text_column_suggests_the_text_column(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = csv_file(tmp_path, "emotion.csv", labelled().rename(columns={"text": "tweet"}))
    before = snapshot(tmp_path)
    result = invoke(*train_cmd(data, tmp_path / "model", tiny_model_dir))
    line = assert_user_error(result, str(data), "no column 'text'", "'id'", "'tweet'", "'label'")
    assert line.endswith("pass --text-col tweet")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("column", "values"),
    [("sentiment", lambda df: df["label"]), ("stars", lambda df: np.where(df["label"] == "positive", 5, 1))],
)
def test_train_missing_label_column_suggests_the_label_column(
    tmp_path: Path, tiny_model_dir: Path, column: str, values
) -> None:
    df = labelled()
    df[column] = values(df)
    data = csv_file(tmp_path, "data.csv", df.drop(columns="label"))
    before = snapshot(tmp_path)
    result = invoke(*train_cmd(data, tmp_path / "model", tiny_model_dir))
    line = assert_user_error(result, str(data), "no column 'label'", f"'{column}'", "'text'")
    assert line.endswith(f"pass --label-col {column}")
    assert snapshot(tmp_path) == before


def test_train_empty_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = tmp_path / "empty.csv"
    data.touch()
    before = snapshot(tmp_path)
    result = invoke(*train_cmd(data, tmp_path / "model", tiny_model_dir))
    assert_user_error(result, str(data), "empty")
    assert snapshot(tmp_path) == before


def test_train_header_only_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = tmp_path / "header.csv"
    data.write_text("text,label\n", encoding="utf-8")
    before = snapshot(tmp_path)
    result = invoke(*train_cmd(data, tmp_path / "model", tiny_model_dir))
    assert_user_error(result, str(data), "no rows")
    assert snapshot(tmp_path) == before


def test_train_all_texts_empty(tmp_path: Path, tiny_model_dir: Path) -> None:
    df = pd.DataFrame({"text": ["", "   ", "\t", None] * 3, "label": ["positive", "negative"] * 6})
    data = csv_file(tmp_path, "blank.csv", df)
    before = snapshot(tmp_path)
    result = invoke(*train_cmd(data, tmp_path / "model", tiny_model_dir))
    assert_user_error(result, str(data), "no rows left", "12 with empty text")
    assert snapshot(tmp_path) == before


def test_train_only_one_class(tmp_path: Path, tiny_model_dir: Path) -> None:
    df = labelled()
    df["label"] = "positive"
    data = csv_file(tmp_path, "one.csv", df)
    before = snapshot(tmp_path)
    result = invoke(*train_cmd(data, tmp_path / "model", tiny_model_dir))
    assert_user_error(result, str(data), "'label'", "only one class", "'positive'", "at least two")
    assert snapshot(tmp_path) == before


def test_train_validation_labels_never_seen(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = csv_file(tmp_path, "train.csv", labelled(60))
    val = labelled(20, seed=5)
    val.loc[[3, 7, 11], "label"] = "neutral"
    val_path = csv_file(tmp_path, "val.csv", val)
    before = snapshot(tmp_path)
    result = invoke(*train_cmd(data, tmp_path / "model", tiny_model_dir, "--validation", val_path))
    known = "known labels: negative, positive"
    assert_user_error(result, str(val_path), "'neutral'", "(3 rows)", str(data), known)
    assert snapshot(tmp_path) == before


def test_train_label_map_leaves_a_label_unmapped(tmp_path: Path, tiny_model_dir: Path) -> None:
    df = labelled(30)
    df["label"] = [1, 2, 3] * 10
    data = csv_file(tmp_path, "stars.csv", df)
    before = snapshot(tmp_path)
    result = invoke(*train_cmd(data, tmp_path / "model", tiny_model_dir, "--label-map", LABEL_MAP))
    assert_user_error(result, str(data), "--label-map", "'3'", "'label'", "(10 rows)", "'3=NAME'")
    assert snapshot(tmp_path) == before


def test_train_bad_label_map_syntax(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = csv_file(tmp_path, "train.csv", labelled())
    before = snapshot(tmp_path)
    result = invoke(*train_cmd(data, tmp_path / "model", tiny_model_dir, "--label-map", "1:negative"))
    assert_user_error(result, "--label-map", "'1:negative'", "RAW=NAME")
    assert snapshot(tmp_path) == before


def test_train_never_replaces_a_folder_that_is_not_a_model_even_with_overwrite(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    data = csv_file(tmp_path, "train.csv", labelled(60))
    out = tmp_path / "project"  # -o ~/project --overwrite
    (out / "src").mkdir(parents=True)
    (out / "notes.txt").write_text("my precious notes", encoding="utf-8")
    before = snapshot(tmp_path)
    for extra in ([], ["--overwrite"]):
        result = invoke(*train_cmd(data, out, tiny_model_dir, "--cache-dir", tmp_path / "cache", *extra))
        assert_user_error(result, str(out), "not a bertfit model (it holds notes.txt, src)", "even with --overwrite")
        assert snapshot(tmp_path) == before, "refused before any work: no cache, no work folder"

    (out / "notes.txt").unlink()
    (out / "src").rmdir()
    result = invoke(*train_cmd(data, out, tiny_model_dir, "--overwrite"))  # an empty folder is replaced
    assert result.exit_code == 0, result.output
    assert (out / "bertfit.json").is_file() and (out / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project", "train.csv"], "work folder left"


@pytest.mark.parametrize("spelling", [".", "..", "absolute"])
def test_train_into_the_current_folder_fails_before_training(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    data = csv_file(tmp_path, "train.csv", labelled(60))
    here = tmp_path / "project" / "empty"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    before = snapshot(tmp_path)
    out = here if spelling == "absolute" else spelling
    result = invoke(*train_cmd(data, out, tiny_model_dir, "--cache-dir", tmp_path / "cache"))
    assert_user_error(result, "the output is the current folder (or a folder above it)", "-o model")
    assert snapshot(tmp_path) == before, "refused before any work: no cache, no work folder"


def test_debug_shows_the_exception(tmp_path: Path) -> None:
    result = invoke("--debug", "train", tmp_path / "nowhere.csv", "--output", tmp_path / "model")
    assert isinstance(result.exception, DataError)
    assert "not found" in str(result.exception)


# User errors in `bertfit predict`, `evaluate` and `info`.


def test_predict_missing_model_folder(tmp_path: Path) -> None:
    data = csv_file(tmp_path, "in.csv", labelled(5))
    before = snapshot(tmp_path)
    result = invoke("predict", tmp_path / "no-model", data, tmp_path / "out.csv")
    assert_user_error(result, str(tmp_path / "no-model"), "model folder not found", "bertfit train")
    assert snapshot(tmp_path) == before


def test_predict_missing_text_column_then_text_col(tmp_path: Path, tiny_trained: Path) -> None:
    data = csv_file(tmp_path, "in.csv", labelled(6).drop(columns="label").rename(columns={"text": "review"}))
    before = snapshot(tmp_path)
    result = invoke("predict", tiny_trained, data, tmp_path / "out.csv")
    line = assert_user_error(result, str(data), "no column 'text'", "'id'", "'review'")
    assert line.endswith("pass --text-col review")
    assert snapshot(tmp_path) == before

    result = invoke("predict", tiny_trained, data, tmp_path / "out.csv", "--text-col", "review")
    assert result.exit_code == 0, result.output
    assert len(read_table(tmp_path / "out.csv")) == 6


def test_predict_unknown_output_extension_writes_nothing(tmp_path: Path, tiny_trained: Path) -> None:
    data = csv_file(tmp_path, "in.csv", labelled(5))
    before = snapshot(tmp_path)
    result = invoke("predict", tiny_trained, data, tmp_path / "out.docx")
    assert_user_error(result, "out.docx", "unknown file type")
    assert snapshot(tmp_path) == before


def test_evaluate_labels_the_model_never_saw(tmp_path: Path, tiny_trained: Path) -> None:
    df = labelled(12)
    df.loc[[0, 5], "label"] = "neutral"
    data = csv_file(tmp_path, "test.csv", df)
    before = snapshot(tmp_path)
    result = invoke("evaluate", tiny_trained, data, "--output", tmp_path / "m.json")
    known = "known labels: negative, positive"
    assert_user_error(result, str(data), "'neutral'", "(2 rows)", "never saw", known)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "args",
    [["--batch-size", "0"], ["--batch-size", "-1"], ["--precision", "fp8"]],
    ids=["batch-size-0", "batch-size-negative", "precision-unknown"],
)
def test_predict_bad_options_write_nothing(tmp_path: Path, tiny_trained: Path, args: list[str]) -> None:
    data = csv_file(tmp_path, "in.csv", labelled(5))
    before = snapshot(tmp_path)
    result = invoke("predict", tiny_trained, data, tmp_path / "out.csv", *args)
    line = assert_user_error(result, args[1])
    assert re.search(args[0].strip("-").replace("-", "[-_]"), line), "the message names the option"
    assert snapshot(tmp_path) == before


def test_evaluate_bad_batch_size(tmp_path: Path, tiny_trained: Path) -> None:
    data = csv_file(tmp_path, "test.csv", labelled(8))
    line = assert_user_error(invoke("evaluate", tiny_trained, data, "--batch-size", "-1", "--json"), "-1")
    assert re.search("batch[-_]size", line)


def test_evaluate_output_into_missing_folder(tmp_path: Path, tiny_trained: Path) -> None:
    data = csv_file(tmp_path, "test.csv", labelled(8))
    before = snapshot(tmp_path)
    result = invoke("evaluate", tiny_trained, data, "--output", tmp_path / "reports" / "m.json")
    assert_user_error(result, str(tmp_path / "reports"), "does not exist")
    assert snapshot(tmp_path) == before


def test_info_on_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    assert_user_error(invoke("info", tmp_path), str(tmp_path), "not a model folder")


# The real console script: one line on stderr, exit 2, no traceback.


def console_script() -> Path:
    script = Path(sys.executable).parent / "bertfit"
    found = script if script.is_file() else shutil.which("bertfit")
    assert found, "the 'bertfit' console script is not installed"
    return Path(found)


def run_script(*args: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "80"}
    return subprocess.run(
        [str(console_script()), *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert proc.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0]


def test_script_train_missing_file(tmp_path: Path) -> None:
    proc = run_script("train", tmp_path / "nowhere.csv", "--output", tmp_path / "model")
    assert_one_line_error(proc, str(tmp_path / "nowhere.csv"), "not found")
    assert list(tmp_path.iterdir()) == []


def test_script_train_missing_text_column(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = csv_file(tmp_path, "emotion.csv", labelled().rename(columns={"text": "tweet"}))
    proc = run_script("--quiet", *train_cmd(data, tmp_path / "model", tiny_model_dir))
    assert_one_line_error(proc, str(data), "no column 'text'", "--text-col tweet")
    assert [p.name for p in tmp_path.iterdir()] == ["emotion.csv"]


def test_script_predict_missing_model(tmp_path: Path) -> None:
    data = csv_file(tmp_path, "in.csv", labelled(5))
    proc = run_script("predict", tmp_path / "no-model", data, tmp_path / "out.csv")
    assert_one_line_error(proc, str(tmp_path / "no-model"), "model folder not found")
    assert [p.name for p in tmp_path.iterdir()] == ["in.csv"]


# Round trips: train -> predict in every format, label maps, several text columns, empty texts.


def assert_predictions(out: pd.DataFrame, inp: pd.DataFrame, labels: list[str], probs: bool) -> None:
    prob_cols = [f"prob_{name}" for name in labels] if probs else []
    assert list(out.columns) == [*inp.columns, *PRED_COLUMNS, *prob_cols]
    assert len(out) == len(inp)
    assert [str(i) for i in out["id"]] == [str(i) for i in inp["id"]]  # CSV/TSV give every value back as text
    assert out["text"].tolist() == inp["text"].tolist()
    assert set(out["pred_label"]) <= set(labels) and out["pred_label"].notna().all()
    score = out["pred_score"].astype(float)
    assert ((score >= 1 / len(labels) - 1e-6) & (score <= 1 + 1e-6)).all()
    if probs:
        p = out[prob_cols].to_numpy(dtype=float)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(score, p.max(axis=1), atol=1e-6)
        assert out["pred_label"].tolist() == [labels[i] for i in p.argmax(axis=1)]


@pytest.mark.parametrize("ext", ["csv", "tsv", "jsonl", "parquet", "h5", "xlsx"])
def test_every_format_round_trips_train_then_predict(tmp_path: Path, tiny_model_dir: Path, ext: str) -> None:
    train_path = tmp_path / f"train.{ext}"
    write_table(labelled(120, seed=3), train_path)
    inp = labelled(30, seed=4)
    inp["source"] = [f"s{i % 4}" for i in range(len(inp))]
    in_path, out_path = tmp_path / f"new.{ext}", tmp_path / f"pred.{ext}"
    write_table(inp, in_path)

    result = invoke(*train_cmd(train_path, tmp_path / "model", tiny_model_dir))
    assert result.exit_code == 0, result.output
    result = invoke("predict", tmp_path / "model", in_path, out_path, "--probs")
    assert result.exit_code == 0, result.output
    assert "wrote 30 rows" in result.stdout

    assert_predictions(read_table(out_path), inp, LABELS, probs=True)
    expected = sorted(["model", train_path.name, in_path.name, out_path.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == expected


def test_predict_without_probs_adds_only_label_and_score(tmp_path: Path, tiny_trained: Path) -> None:
    inp = labelled(20, seed=9)
    data = csv_file(tmp_path, "in.csv", inp)
    result = invoke("predict", tiny_trained, data, tmp_path / "out.parquet")
    assert result.exit_code == 0, result.output
    out = read_table(tmp_path / "out.parquet")
    assert_predictions(out, inp, LABELS, probs=False)
    assert (out["pred_label"] == inp["label"]).mean() >= 0.8, "the trained tiny model should get most right"


def test_integer_labels_with_label_map(tmp_path: Path, tiny_model_dir: Path) -> None:
    df = labelled(120, seed=6)
    df["label"] = df["label"].map({"negative": 1, "positive": 2})
    data = csv_file(tmp_path, "stars.csv", df)
    label_map = f"{LABEL_MAP},3=neutral"  # no row has label 3: a warning, not a class no row has
    result = invoke(*train_cmd(data, tmp_path / "model", tiny_model_dir, "--label-map", label_map))
    assert result.exit_code == 0, result.output
    assert "--label-map entry '3=neutral' matches no label in column 'label'; ignored" in result.stderr
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["labels"] == LABELS

    inp = labelled(16, seed=8).drop(columns="label")
    in_path = csv_file(tmp_path, "in.csv", inp)
    result = invoke("predict", tmp_path / "model", in_path, tmp_path / "out.csv", "--probs")
    assert result.exit_code == 0, result.output
    assert_predictions(read_table(tmp_path / "out.csv"), inp, LABELS, probs=True)

    info = invoke("info", tmp_path / "model", "--json")
    assert info.exit_code == 0 and json.loads(info.stdout)["labels"] == LABELS

    test = labelled(20, seed=10)
    test["label"] = test["label"].map({"negative": 1, "positive": 2})
    result = invoke("evaluate", tmp_path / "model", csv_file(tmp_path, "test.csv", test), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["labels"] == LABELS and report["n"] == 20
    assert {name: c["support"] for name, c in report["per_class"].items()} == {"negative": 10, "positive": 10}


def titled(n: int, seed: int) -> pd.DataFrame:
    df = labelled(n, seed)
    df["title"] = [f"review {i}" for i in range(n)]
    return df.rename(columns={"text": "body"})[["id", "title", "body", "label"]]


def test_several_text_columns(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = csv_file(tmp_path, "train.csv", titled(120, seed=11))
    cmd = train_cmd(data, tmp_path / "model", tiny_model_dir, "--text-col", "title", "--text-col", "body")
    result = invoke(*cmd)
    assert result.exit_code == 0, result.output
    info = json.loads(invoke("info", tmp_path / "model", "--json").stdout)
    assert info["text_cols"] == ["title", "body"]

    inp = titled(12, seed=12).drop(columns="label")
    inp.loc[2, "body"] = None  # a title alone is still text
    result = invoke("predict", tmp_path / "model", csv_file(tmp_path, "in.csv", inp), tmp_path / "out.csv")
    assert result.exit_code == 0, result.output
    out = read_table(tmp_path / "out.csv")
    assert list(out.columns) == [*inp.columns, *PRED_COLUMNS]
    assert out["id"].tolist() == [str(i) for i in inp["id"]]
    assert out["pred_label"].notna().all() and set(out["pred_label"]) <= set(LABELS)

    no_body = csv_file(tmp_path, "no_body.csv", inp.drop(columns="body"))
    result = invoke("predict", tmp_path / "model", no_body, tmp_path / "out2.csv")
    assert_user_error(result, str(no_body), "no column 'body'")
    assert not (tmp_path / "out2.csv").exists()


def test_predict_keeps_rows_with_empty_text(tmp_path: Path, tiny_trained: Path) -> None:
    inp = pd.DataFrame(
        {"id": [5, 4, 3, 2, 1, 0], "text": ["great fun movie", "", "   ", None, "awful boring film", "\n"]}
    )
    data = tmp_path / "in.jsonl"
    write_table(inp, data)
    result = invoke("predict", tiny_trained, data, tmp_path / "out.jsonl", "--probs", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 6 and summary["empty_text"] == 4

    out = read_table(tmp_path / "out.jsonl")
    assert out["id"].tolist() == [5, 4, 3, 2, 1, 0]
    scored = out["id"].isin([5, 1]).to_numpy()
    assert out["pred_label"].isna().tolist() == (~scored).tolist()
    assert out["pred_score"].isna().tolist() == (~scored).tolist()
    assert out[PROB_COLUMNS].isna().all(axis=1).tolist() == (~scored).tolist()
    assert out.loc[scored, "pred_label"].tolist() == ["positive", "negative"]


# info, evaluate, help


def test_info_prints_labels_and_base_model(tiny_trained: Path, tiny_model_dir: Path) -> None:
    result = invoke("info", tiny_trained)
    assert result.exit_code == 0, result.output
    assert '["negative", "positive"]' in result.stdout
    assert "base_model" in result.stdout and tiny_model_dir.name in result.stdout

    details = json.loads(invoke("info", tiny_trained, "--json").stdout)
    assert details["labels"] == LABELS
    assert details["base_model"] == str(tiny_model_dir)
    assert details["text_cols"] == ["text"]


def test_evaluate_writes_the_json_report(tmp_path: Path, tiny_trained: Path, sentiment_data) -> None:
    _, val_df = sentiment_data
    data = csv_file(tmp_path, "val.csv", val_df)
    result = invoke("evaluate", tiny_trained, data, "--output", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "m.json" in result.stdout

    report = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    keys = {"accuracy", "macro_f1", "micro_f1", "mcc", "per_class", "confusion_matrix", "labels", "n"}
    assert keys <= set(report)
    assert report["labels"] == LABELS and report["n"] == len(val_df)
    cm = np.asarray(report["confusion_matrix"])
    assert cm.shape == (2, 2) and cm.sum() == len(val_df)
    assert report["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert report["per_class"]["positive"]["support"] == int((val_df["label"] == "positive").sum())
    assert report["accuracy"] >= 0.8, report["accuracy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "val.csv"]


def help_text(*command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "250"}, prog_name="bertfit")
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ([], ["train", "evaluate", "predict", "info"]),
        (["train"], ["train_file", "--output", "--text-col", "--label-map", "--validation", "--overwrite"]),
        (["evaluate"], ["model_dir", "data_file", "--output", "--json"]),
        (["predict"], ["model_dir", "input_file", "output_file", "--probs", "--text-col"]),
        (["info"], ["model_dir", "--json"]),
    ],
)
def test_help(command: list[str], expected: list[str]) -> None:
    text = help_text(*command)
    assert f"Usage: bertfit {' '.join(command)}".strip() in text
    for word in expected:
        assert word in text.lower()


@pytest.mark.parametrize(
    ("command", "option", "shown"),
    [
        ("train", "--label-col", "Label column [label]."),
        ("train", "--model", "[all-MiniLM-L6-v2]"),
        ("train", "--val-fraction", "[0.1]"),
        ("evaluate", "--label-col", "Label column [as in training]."),
    ],
    ids=["train-label-col", "train-model", "train-val-fraction", "evaluate-label-col"],
)
def test_help_shows_defaults_in_brackets(command: str, option: str, shown: str) -> None:
    """Help texts write defaults as '[label]'; rich markup must not swallow them as tags."""
    lines = help_text(command).splitlines()
    start = next(i for i, line in enumerate(lines) if f" {option} " in line)
    # The option's help may wrap onto following lines at the runner's terminal width; read it as one text.
    entry = " ".join(lines[start].split())
    for line in lines[start + 1 :]:
        if line.strip().startswith("-"):
            break
        entry += " " + " ".join(line.split())
    assert shown.replace(" ", "") in entry.replace(" ", ""), entry  # wrapping may split at a hyphen


ODD_LABELS = {"$x^$": POSITIVE[:4], "[/]": POSITIVE[4:], "a|b": NEGATIVE[:4], "../x": NEGATIVE[4:]}


def odd_labelled(n: int, seed: int) -> pd.DataFrame:
    """Four labels that are markup, mathtext, a Markdown cell separator and a path; each has its own words."""
    rng = random.Random(seed)
    names = list(ODD_LABELS)
    rows = []
    for i in range(n):
        words = rng.sample(FILLER, rng.randint(3, 6)) + rng.sample(ODD_LABELS[names[i % 4]], 2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": names[i % 4]})
    return pd.DataFrame(rows)


def test_label_names_are_shown_as_written_from_train_to_predict(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml
    from rich.console import Console

    from bertfit.cli import common

    monkeypatch.setattr(common, "out", Console(width=200))  # one table row per label, whatever the terminal
    names = list(ODD_LABELS)
    model = tmp_path / "model"
    train = csv_file(tmp_path, "train.csv", odd_labelled(320, seed=1))
    result = invoke("train", train, "--output", model, "--model", tiny_model_dir, "--epochs", "6", "--lr", "3e-3",
                    "--batch-size", "16")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert {p.name for p in (model / "report").iterdir()} >= {"report.html", "confusion.png", "per_class.png"}
    assert json.loads((model / "bertfit.json").read_text())["labels"]["names"] == sorted(names)

    card = (model / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "transformers" and front["base_model"] == str(tiny_model_dir)
    rows = [line for line in card.splitlines() if line.startswith("| ") and "precision" not in line]
    per_class = [re.split(r"(?<!\\)\|", row)[1:-1] for row in rows if row.count("|") > 3]
    assert [len(cells) for cells in per_class] == [5] * 4, per_class  # label, precision, recall, f1, support
    assert sorted(re.sub(r"\\(.)", r"\1", cells[0].strip()) for cells in per_class) == sorted(names)

    result = invoke("check", train, "--model", tiny_model_dir)
    assert result.exit_code == 0 and all(f"{name} 80" in result.stdout for name in names), result.stdout

    test = odd_labelled(80, seed=2)
    result = invoke("evaluate", model, csv_file(tmp_path, "test.csv", test), "--report", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    table = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("│ ")}
    assert set(names) <= set(table), result.stdout
    assert (tmp_path / "eval" / "confusion.png").is_file()

    result = invoke("predict", model, csv_file(tmp_path, "in.csv", test.drop(columns="label")), tmp_path / "out.csv")
    assert result.exit_code == 0, result.output
    predicted = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)["pred_label"]
    assert set(predicted) == set(names) and (predicted == test["label"]).mean() > 0.8

    result = invoke("info", model)
    assert result.exit_code == 0 and all(name in result.stdout for name in names), result.stdout
    made = {p.name for p in tmp_path.rglob("*")}
    assert not made & {"x", "[", "]", "a|b", "$x^$"}, "no file or folder is named after a label"
