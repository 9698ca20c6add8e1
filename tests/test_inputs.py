"""A corpus of malformed and odd inputs (tests/inputs/, described in its README.md) through the `bertfit` CLI.

Malformed inputs: exit 2, one `error:` line naming the file (and the line or column) and the fix, no traceback,
nothing written. Odd but valid inputs: exit 0 and the right output, through train, evaluate and predict.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import Result
from safetensors.torch import load_file
from test_cli import assert_user_error, invoke, snapshot

from bertfit.data.io import read_table

INPUTS = Path(__file__).resolve().parent / "inputs"
ONE_EPOCH = ["--epochs", "1", "--lr", "3e-3", "--batch-size", "16"]
LABELS = ["negative", "positive"]

pytestmark = pytest.mark.usefixtures("restore_cli_state")


def _generator():
    spec = importlib.util.spec_from_file_location("make_inputs", INPUTS / "make_inputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


corpus = _generator()


def staged(tmp_path: Path, name: str) -> Path:
    """A copy of a corpus file in the test's own folder, so that the snapshot also covers its neighbours."""
    dest = tmp_path / name
    shutil.copyfile(INPUTS / name, dest)
    return dest


def run(command: str, data: Path, tmp_path: Path, tiny_model_dir: Path, model: Path, *extra: object) -> Result:
    """`train` or `check` on the data with the tiny base model, or `evaluate` / `predict` with a trained model."""
    if command == "train":
        return invoke("train", data, "--output", tmp_path / "model", "--model", tiny_model_dir, *ONE_EPOCH, *extra)
    if command == "evaluate":
        return invoke("evaluate", model, data, "--output", tmp_path / "report.json", *extra)
    if command == "check":
        return invoke("check", data, "--model", tiny_model_dir, *extra)
    return invoke("predict", model, data, tmp_path / "out.csv", *extra)


ALL = ("train", "evaluate", "predict", "check")
WRITERS = ("train", "evaluate", "predict")  # the commands that write an output
LABELLED = ("train", "evaluate")

# (input, commands, fragments of the error line besides the file's path)
MALFORMED = [
    ("empty.csv", ALL, ["file is empty", "expected a table with a header row"]),
    ("header_only.csv", LABELLED, ["no rows", "at least one labelled row"]),
    ("binary_garbage.csv", ALL, ["binary", "not CSV text", "NUL byte", "right file"]),
    ("truncated.parquet", ALL, ["cannot read as PARQUET", "damaged or cut short", "write or copy it again"]),
    ("invalid_utf8.csv", ALL, ["line 5 is not valid UTF-8", "0xe9", "re-save the file as UTF-8"]),
    ("utf16.csv", ALL, ["UTF-16", "re-save the file as UTF-8"]),
    ("unbalanced_quote.csv", ALL, ["line 4", "quote", "never closes", '""']),
    ("ragged.csv", ALL, ["line 4 has 3 fields", "header has 2", "double quotes"]),
    ("duplicate_columns.csv", ALL, ["column 'text' appears 2 times", "columns 1 and 3", "rename"]),
    ("semicolon.csv", ALL, ["only one column", "'text;label'", "';'-separated", "commas"]),
    ("tabs.csv", ALL, ["only one column", "tab-separated", ".tsv"]),
    ("broken_line.jsonl", ALL, ["line 4 is not valid JSON", "fix or remove that line"]),
    ("wrong_keys.h5", ALL, ["several tables", "/train", "/test", "name it 'data'"]),
    ("no_table.h5", ALL, ["holds no table", "to_hdf", "key='data'"]),
    ("null_labels.csv", LABELLED, ["12 with no label", "--label-col"]),
    ("numeric_text.csv", ALL, ["column 'text' holds numbers, not text", "pass --text-col review"]),
    ("fake.xlsx", ALL, ["cannot read as EXCEL", "real format"]),
]
MALFORMED_CASES = [
    pytest.param(name, command, fragments, id=f"{name}-{command}")
    for name, commands, fragments in MALFORMED
    for command in commands
]


@pytest.mark.parametrize(("name", "command", "fragments"), MALFORMED_CASES)
def test_malformed_input(tmp_path, tiny_model_dir, tiny_trained, name, command, fragments) -> None:
    data = staged(tmp_path, name)
    before = snapshot(tmp_path)
    assert_user_error(run(command, data, tmp_path, tiny_model_dir, tiny_trained), str(data), *fragments)
    assert snapshot(tmp_path) == before


def committed_inputs() -> list[str]:
    return sorted(p.name for p in INPUTS.iterdir() if p.is_file() and p.name not in ("make_inputs.py", "README.md"))


def test_every_committed_input_has_a_case_and_a_readme_entry() -> None:
    committed = committed_inputs()
    covered = {name for name, _, _ in MALFORMED} | set(ODD_CSV) | {"header_only.csv"}
    covered |= {"numeric_labels.csv", "numeric_labels.jsonl"}
    covered |= {"shapes.csv", "shapes.tsv", "shapes.jsonl"}  # tests/test_passthrough.py
    assert sorted(covered) == committed
    readme = (INPUTS / "README.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in readme for name in committed)
    assert sum(p.stat().st_size for p in INPUTS.iterdir()) < 200_000


def test_the_generator_writes_the_committed_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """make_inputs.py is how each file was made: it writes the same bytes (HDF5 files hold creation times)."""
    monkeypatch.setattr(corpus, "HERE", tmp_path)
    corpus.malformed()
    corpus.odd_but_valid()
    corpus.table_shapes()
    assert sorted(p.name for p in tmp_path.iterdir()) == committed_inputs()
    for name in committed_inputs():
        if not name.endswith(".h5"):
            assert (tmp_path / name).read_bytes() == (INPUTS / name).read_bytes(), name


# A folder where a file is expected, and outputs that cannot be written.


def test_folder_where_a_data_file_is_expected(tmp_path, tiny_trained) -> None:
    folder = tmp_path / "test.csv"
    folder.mkdir()
    before = snapshot(tmp_path)
    result = invoke("evaluate", tiny_trained, folder, "--output", tmp_path / "report.json")
    assert_user_error(result, str(folder), "is a folder", "expected a data file", "point at a file")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["train", "predict"])
def test_folder_without_data_files(tmp_path, tiny_model_dir, tiny_trained, command) -> None:
    folder = tmp_path / "shards"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a table", encoding="utf-8")
    before = snapshot(tmp_path)
    result = run(command, folder, tmp_path, tiny_model_dir, tiny_trained)
    assert_user_error(result, str(folder), "folder holds no data files", "point at a file")
    assert snapshot(tmp_path) == before


def test_folder_where_the_report_file_is_expected(tmp_path, tiny_trained) -> None:
    data = staged(tmp_path, "bom.csv")
    (tmp_path / "report.json").mkdir()
    before = snapshot(tmp_path)
    result = invoke("evaluate", tiny_trained, data, "--output", tmp_path / "report.json")
    assert_user_error(result, str(tmp_path / "report.json"), "is a folder", "give a file name")
    assert snapshot(tmp_path) == before


OUTPUT_NAMES = {"train": "model", "evaluate": "report.json", "predict": "out.csv"}


def write_to(command: str, target: Path, data: Path, tiny_model_dir: Path, model: Path) -> Result:
    """The command with its output (model folder, report, predictions) at `target`."""
    if command == "train":
        return invoke("train", data, "--output", target, "--model", tiny_model_dir, *ONE_EPOCH)
    if command == "evaluate":
        return invoke("evaluate", model, data, "--output", target)
    return invoke("predict", model, data, target)


@pytest.fixture
def read_only_folder(tmp_path: Path):
    """A folder no file can be created in: chmod 555, or (as root, whom modes do not stop) /sys."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    try:
        tempfile.TemporaryFile(dir="/sys").close()
    except OSError:
        yield Path("/sys")
    else:
        pytest.skip("no read-only folder available")


@pytest.mark.parametrize("command", WRITERS)
def test_unwritable_output_folder(tmp_path, tiny_model_dir, tiny_trained, read_only_folder, command) -> None:
    data = staged(tmp_path, "crlf.csv")
    target = read_only_folder / OUTPUT_NAMES[command]
    before, before_target = snapshot(tmp_path), sorted(p.name for p in read_only_folder.iterdir())
    result = write_to(command, target, data, tiny_model_dir, tiny_trained)
    assert_user_error(result, str(target), "not writable", "choose another")
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in read_only_folder.iterdir()) == before_target


@pytest.mark.parametrize("command", WRITERS)
def test_output_inside_a_file(tmp_path, tiny_model_dir, tiny_trained, command) -> None:
    data = staged(tmp_path, "crlf.csv")
    notes = tmp_path / "notes.txt"
    notes.write_text("a file, not a folder", encoding="utf-8")
    target = notes / OUTPUT_NAMES[command]
    before = snapshot(tmp_path)
    result = write_to(command, target, data, tiny_model_dir, tiny_trained)
    assert_user_error(result, str(target), f"{notes} is a file, not a folder")
    assert snapshot(tmp_path) == before


# Model folders that are incomplete or hold a pickle checkpoint.


@pytest.fixture
def no_weights_model(tmp_path: Path, tiny_trained: Path) -> Path:
    folder = tmp_path / "no-weights"
    shutil.copytree(tiny_trained, folder)
    (folder / "model.safetensors").unlink()
    return folder


@pytest.fixture
def pickle_model(tmp_path: Path, tiny_trained: Path) -> Path:
    """The trained model with its weights saved as a pickle checkpoint (pytorch_model.bin) only."""
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_trained, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_model_folder_without_weights(tmp_path, tiny_model_dir, no_weights_model, command) -> None:
    data = staged(tmp_path, "crlf.csv")
    before = snapshot(tmp_path)
    result = run(command, data, tmp_path, tiny_model_dir, no_weights_model)
    line = assert_user_error(result, str(no_weights_model), "no model weights", "model.safetensors", "bertfit train")
    assert "--allow-pickle" not in line, "there is no pickle file to allow"
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_pickle_checkpoint_is_refused_then_allowed(tmp_path, tiny_model_dir, tiny_trained, pickle_model, command):
    data = staged(tmp_path, "crlf.csv")
    before = snapshot(tmp_path)
    result = run(command, data, tmp_path, tiny_model_dir, pickle_model)
    fragments = ["pickle checkpoint", "pytorch_model.bin", "run code", "--allow-pickle", "safetensors"]
    assert_user_error(result, str(pickle_model), *fragments)
    assert snapshot(tmp_path) == before

    # fp32 both times: the pickle folder and the safetensors one are two models to `--dtype auto`, each timed on its
    # own, and on the tiny model fp32 and bf16 run about equally fast, so auto may settle them differently
    result = run(command, data, tmp_path, tiny_model_dir, pickle_model, "--allow-pickle", "--dtype", "fp32")
    assert result.exit_code == 0, result.output
    if command == "predict":
        out = read_table(tmp_path / "out.csv")
        assert len(out) == 12 and set(out["pred_label"]) <= set(LABELS)
        reference = tmp_path / "reference.csv"
        assert invoke("predict", tiny_trained, data, reference, "--dtype", "fp32").exit_code == 0
        pd.testing.assert_frame_equal(out, read_table(reference), check_exact=False, atol=1e-5)
    else:
        report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
        assert report["n"] == 12 and report["labels"] == LABELS


def test_train_from_a_pickle_base_model(tmp_path, tiny_model_dir) -> None:
    base = tmp_path / "pickled-base"
    shutil.copytree(tiny_model_dir, base)
    torch.save(load_file(base / "model.safetensors"), base / "pytorch_model.bin")
    (base / "model.safetensors").unlink()
    data = staged(tmp_path, "crlf.csv")
    before = snapshot(tmp_path)
    result = invoke("train", data, "--output", tmp_path / "model", "--model", base, *ONE_EPOCH)
    assert_user_error(result, str(base), "pickle checkpoint", "--allow-pickle", "safetensors")
    assert snapshot(tmp_path) == before

    result = invoke("train", data, "--output", tmp_path / "model", "--model", base, *ONE_EPOCH, "--allow-pickle")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model" / "model.safetensors").is_file()


# Odd but valid inputs: the same rows come back whatever the file's quirks.

ODD_CSV = {
    "bom.csv": corpus.ROWS,
    "crlf.csv": corpus.ROWS,
    "blank_lines.csv": corpus.ROWS,
    "quoted_newlines.csv": [(f"{t}\nsecond line, with a comma\n\nand a blank line", y) for t, y in corpus.ROWS[:6]]
    + corpus.ROWS[6:],
    "emoji_rtl.csv": corpus.EMOJI_RTL,
    "emoji_rtl.jsonl": corpus.EMOJI_RTL,
}


@pytest.mark.parametrize("name", list(ODD_CSV))
def test_odd_but_valid_input(tmp_path, tiny_model_dir, tiny_trained, name) -> None:
    data = staged(tmp_path, name)
    texts = [t for t, _ in ODD_CSV[name]]
    labels = [y for _, y in ODD_CSV[name]]

    result = run("train", data, tmp_path, tiny_model_dir, tiny_trained, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["labels"] == sorted(set(labels))
    assert summary["train_rows"] + summary["val_rows"] == len(texts)

    result = run("predict", data, tmp_path, tiny_model_dir, tiny_trained)
    assert result.exit_code == 0, result.output
    out = read_table(tmp_path / "out.csv")
    assert list(out.columns) == ["text", "label", "pred_label", "pred_score"]
    assert out["text"].tolist() == texts and out["label"].tolist() == labels
    assert out["pred_label"].notna().all() and set(out["pred_label"]) <= set(LABELS)

    result = run("evaluate", data, tmp_path, tiny_model_dir, tiny_trained, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == len(texts)
    assert {k: c["support"] for k, c in report["per_class"].items()} == {y: labels.count(y) for y in LABELS}


def test_header_only_file_predicts_an_empty_table(tmp_path, tiny_trained) -> None:
    data = staged(tmp_path, "header_only.csv")
    result = invoke("predict", tiny_trained, data, tmp_path / "out.csv", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 0
    out = read_table(tmp_path / "out.csv")
    assert list(out.columns) == ["text", "label", "pred_label", "pred_score"] and len(out) == 0


@pytest.mark.parametrize("name", ["numeric_labels.csv", "numeric_labels.jsonl"])
def test_labels_that_look_like_numbers_stay_distinct(tmp_path, tiny_model_dir, name) -> None:
    data = staged(tmp_path, name)
    result = invoke("train", data, "--output", tmp_path / "model", "--model", tiny_model_dir, *ONE_EPOCH, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["labels"] == ["001", "01", "1"]
    config = json.loads((tmp_path / "model" / "config.json").read_text(encoding="utf-8"))
    assert sorted(config["id2label"].values()) == ["001", "01", "1"]

    result = invoke("evaluate", tmp_path / "model", data, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {k: c["support"] for k, c in report["per_class"].items()} == {"001": 4, "01": 4, "1": 4}

    result = invoke("predict", tmp_path / "model", data, tmp_path / "out.jsonl")
    assert result.exit_code == 0, result.output
    out = read_table(tmp_path / "out.jsonl")
    assert out["label"].tolist() == ["01", "1", "001"] * 4
    assert set(out["pred_label"]) <= {"001", "01", "1"}


# Large inputs, generated here rather than committed.


def words(n: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    vocabulary = np.array(corpus.ROWS[0][0].split() + "the story was so good and very nice".split())
    return " ".join(rng.choice(vocabulary, n))


def test_one_megabyte_text(tmp_path, tiny_model_dir, tiny_trained) -> None:
    big = words(250_000)[:1_000_000]
    rows = [(big, "positive"), *corpus.ROWS[1:]]
    data = tmp_path / "big_text.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(data, index=False)
    assert data.stat().st_size > 1_000_000

    result = invoke("predict", tiny_trained, data, tmp_path / "out.parquet", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 12 and summary["truncated"] == 1
    out = read_table(tmp_path / "out.parquet")
    assert out["text"].tolist() == [t for t, _ in rows]
    assert out["pred_label"].notna().all()

    result = invoke("evaluate", tiny_trained, data, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["n"] == 12, result.output
    result = run("train", data, tmp_path, tiny_model_dir, tiny_trained, "--max-length", "32", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["train_rows"] + json.loads(result.stdout)["val_rows"] == 12


def test_ten_thousand_copies_of_one_text(tmp_path, tiny_model_dir, tiny_trained) -> None:
    data = tmp_path / "same.csv"
    pd.DataFrame({"text": ["the same great story"] * 10_000, "label": ["positive", "negative"] * 5_000}).to_csv(
        data, index=False
    )
    args = ["--max-steps", "2", "--batch-size", "64", "--json"]
    result = invoke("train", data, "--output", tmp_path / "model", "--model", tiny_model_dir, *args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["train_rows"] + summary["val_rows"] == 10_000 and summary["labels"] == LABELS

    result = invoke("predict", tmp_path / "model", data, tmp_path / "out.parquet")
    assert result.exit_code == 0, result.output
    out = read_table(tmp_path / "out.parquet")
    assert len(out) == 10_000 and out["pred_label"].nunique() == 1, "one text, one prediction"
    assert np.ptp(out["pred_score"].to_numpy()) < 1e-3, "batches of other sizes may differ in the last bits only"


def test_five_hundred_classes(tmp_path, tiny_model_dir) -> None:
    names = [f"class_{i:03d}" for i in range(500)]
    data = tmp_path / "many.csv"
    pd.DataFrame({"text": [words(6, seed=i) for i in range(1000)], "label": names * 2}).to_csv(data, index=False)
    args = ["--epochs", "1", "--batch-size", "128", "--json"]
    result = invoke("train", data, "--output", tmp_path / "model", "--model", tiny_model_dir, *args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["labels"] == names
    config = json.loads((tmp_path / "model" / "config.json").read_text(encoding="utf-8"))
    assert [config["id2label"][str(i)] for i in range(500)] == names

    inp = tmp_path / "in.csv"
    pd.DataFrame({"text": ["great story", "bad plot", "nice"]}).to_csv(inp, index=False)
    result = invoke("predict", tmp_path / "model", inp, tmp_path / "out.csv", "--probs")
    assert result.exit_code == 0, result.output
    out = pd.read_csv(tmp_path / "out.csv")
    probs = out[[f"prob_{n}" for n in names]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert out["pred_label"].isin(names).all()
