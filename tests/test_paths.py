"""Outputs never write over inputs: the rule (paths.check_not_input) and every command that writes what a user named.

Each refusal is one line, exit code 2, and leaves the input byte for byte as it was, with nothing written beside it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import sentiment_frame
from test_cli import assert_user_error, invoke, snapshot

from bertfit.data.paths import check_not_input, model_files
from bertfit.errors import DataError

pytestmark = pytest.mark.usefixtures("restore_cli_state")

FAST = ["--epochs", "1", "--lr", "3e-3", "--batch-size", "16"]


def write_csv(path: Path, n: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sentiment_frame(n, seed=3).to_csv(path, index=False)
    return path


# The rule itself.


def test_the_message_names_both_paths_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "reviews.csv")
    with pytest.raises(DataError) as info:
        check_not_input("reviews.csv", ["reviews.csv"])
    assert str(info.value) == (
        "reviews.csv: the output would overwrite the input file reviews.csv; choose another output path"
    )


@pytest.mark.parametrize("spelling", ["same", "dot", "dotdot", "absolute", "symlink", "hardlink"])
def test_an_output_that_is_the_input_however_spelled_is_refused(tmp_path, monkeypatch, spelling):
    monkeypatch.chdir(tmp_path)
    data = write_csv(tmp_path / "data" / "reviews.csv")
    output = {
        "same": Path("data/reviews.csv"),
        "dot": Path("./data/./reviews.csv"),
        "dotdot": Path("data/../data/reviews.csv"),
        "absolute": data,
        "symlink": tmp_path / "link.csv",
        "hardlink": tmp_path / "hard.csv",
    }[spelling]
    if spelling == "symlink":
        output.symlink_to(data)
    if spelling == "hardlink":
        os.link(data, output)
    with pytest.raises(DataError, match="the output would overwrite the input file data/reviews.csv"):
        check_not_input(output, [Path("data/reviews.csv")])


def test_an_input_folder_is_neither_replaced_nor_written_into(tmp_path):
    shards = tmp_path / "shards"
    write_csv(shards / "part-1.csv")
    with pytest.raises(DataError, match="would overwrite the input folder"):
        check_not_input(tmp_path / "shards", [shards])
    with pytest.raises(DataError, match="would be written inside the input folder"):
        check_not_input(shards / "labelled.csv", [shards])
    with pytest.raises(DataError, match="would be written inside the input folder"):
        check_not_input(shards / "new" / "deeper.parquet", [shards])  # not there yet, still inside
    (tmp_path / "alias").symlink_to(shards)
    with pytest.raises(DataError, match="would be written inside the input folder"):
        check_not_input(tmp_path / "alias" / "labelled.csv", [shards])


def test_an_output_folder_that_holds_an_input_is_refused(tmp_path):
    data = write_csv(tmp_path / "experiment" / "data" / "train.csv")
    with pytest.raises(DataError, match="the output folder holds the input file .*train.csv"):
        check_not_input(tmp_path / "experiment", [data])


def test_a_folder_written_into_counts_only_the_files_it_writes(tmp_path):
    folder = tmp_path / "out"
    data = write_csv(folder / "test.csv")
    old_report = folder / "report.html"
    old_report.write_text("<p>the training report</p>", encoding="utf-8")
    check_not_input(folder, [data], writes=["report.html"])  # test.csv is left alone: allowed
    with pytest.raises(DataError, match=r"overwrite the input file .*report.html \(it writes report.html there\)"):
        check_not_input(folder, [data, old_report], writes=["report.html"])


def test_bertfits_work_folders_beside_the_output_are_not_inputs(tmp_path):
    work = tmp_path / ".out.csv.bertfit-parts"
    data = write_csv(work / "old.csv")
    with pytest.raises(DataError, match=r"work folder beside the output \(.*\.out\.csv\.bertfit-parts\)"):
        check_not_input(tmp_path / "out.csv", [data])
    with pytest.raises(DataError, match="work folder beside the output"):
        check_not_input(tmp_path / "out.csv", [work])
    check_not_input(tmp_path / "other.csv", [data])  # another output's work folder is not this one's


def test_unrelated_paths_pass(tmp_path):
    data = write_csv(tmp_path / "data" / "train.csv")
    folder = tmp_path / "data2"  # a name that starts like the input folder's is not inside it
    folder.mkdir()
    inputs = [data, tmp_path / "data", None, pd.DataFrame({"text": ["x"]}), tmp_path / "missing.csv"]
    for output in (tmp_path / "out.csv", folder / "out.csv", tmp_path / "data2", tmp_path / "train.csv"):
        check_not_input(output, inputs)


def test_model_files_are_every_file_of_the_folder(tiny_trained):
    files = {p.relative_to(tiny_trained).as_posix() for p in model_files(tiny_trained)}
    assert {"config.json", "model.safetensors", "bertfit.json", "metrics.json", "report/report.html"} <= files
    assert model_files(None) == [] and model_files(tiny_trained / "nowhere") == []


# predict: the local engine (CLI and API) and the ray engine.


@pytest.mark.parametrize("spelling", ["same", "dot", "symlink"])
def test_predict_refuses_to_overwrite_its_input(tmp_path, monkeypatch, tiny_trained, spelling):
    monkeypatch.chdir(tmp_path)
    data = write_csv(tmp_path / "reviews.csv")
    original = data.read_bytes()
    output = {"same": "reviews.csv", "dot": "./reviews.csv", "symlink": "link.csv"}[spelling]
    if spelling == "symlink":
        Path("link.csv").symlink_to(data)
    before = snapshot(tmp_path)
    result = invoke("predict", tiny_trained, "reviews.csv", output)
    assert_user_error(result, "would overwrite the input file reviews.csv", "choose another output path")
    assert data.read_bytes() == original
    assert snapshot(tmp_path) == before  # no output, no parts folder beside it


def test_predict_refuses_an_output_inside_the_input_shard_folder(tmp_path, tiny_trained):
    shards = tmp_path / "shards"
    write_csv(shards / "a.csv")
    write_csv(shards / "b.csv")
    before = snapshot(tmp_path)
    result = invoke("predict", tiny_trained, shards, shards / "labelled.csv")
    assert_user_error(result, str(shards / "labelled.csv"), f"inside the input folder {shards}")
    result = invoke("predict", tiny_trained, shards, shards)
    assert_user_error(result, f"would overwrite the input folder {shards}")
    assert snapshot(tmp_path) == before


def test_a_run_into_the_model_folder_resumes_past_its_own_work_files(tmp_path, tiny_trained):
    """A killed predict into the model folder leaves its lock file and parts there: they are not model files, so
    the rerun is not refused for writing over them."""
    model = tmp_path / "model"
    shutil.copytree(tiny_trained, model)
    data = write_csv(tmp_path / "reviews.csv")
    out = model / "report" / "per_class.csv"
    parts = model / "report" / ".per_class.csv.bertfit-parts"
    parts.mkdir()
    (parts / "manifest.json").write_text("{}")  # nothing committed: started over
    (model / "report" / ".per_class.csv.bertfit-lock").write_text('{"pid": 1}')  # the killed run's, stale
    assert not {p.name for p in model_files(model)} & {"manifest.json", ".per_class.csv.bertfit-lock"}
    result = invoke("predict", model, data, out)
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) == 24 and not parts.exists()


def test_predict_refuses_to_write_over_a_model_file(tmp_path, tiny_trained):
    model = tmp_path / "model"
    shutil.copytree(tiny_trained, model)
    data = write_csv(tmp_path / "reviews.csv")
    before = snapshot(tmp_path)
    result = invoke("predict", model, data, model / "report" / "per_class.csv")  # a new file in it: fine
    assert result.exit_code == 0, result.output
    (model / "report" / "per_class.csv").unlink()
    assert snapshot(tmp_path) == before
    result = invoke("predict", model, data, model / "report")  # the model's report folder as the output folder
    assert_user_error(result, "the output folder holds the input file")
    assert snapshot(tmp_path) == before


def test_the_python_api_refuses_too(tmp_path, tiny_trained):
    from bertfit.prediction.classifier import Classifier, predict_file
    from bertfit.prediction.ray_engine import predict_with_ray

    data = write_csv(tmp_path / "reviews.csv")
    original = data.read_bytes()
    with pytest.raises(DataError, match="would overwrite the input file"):
        predict_file(tiny_trained, data, data)
    with pytest.raises(DataError, match="would overwrite the input file"):
        Classifier.from_pretrained(tiny_trained).predict_file(data, tmp_path / "." / "reviews.csv")
    with pytest.raises(DataError, match="would overwrite the input file"):
        predict_with_ray(tiny_trained, data, data)  # refused before Ray is imported or started
    assert data.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reviews.csv"]


# train, evaluate, explain.


@pytest.mark.parametrize("overwrite", [False, True])
def test_train_refuses_an_output_folder_that_holds_its_data(tmp_path, tiny_model_dir, overwrite):
    experiment = tmp_path / "experiment"
    data = write_csv(experiment / "train.csv", n=40)
    original = data.read_bytes()
    before = snapshot(tmp_path)
    extra = ["--overwrite"] if overwrite else []  # --overwrite would have deleted the folder and the data with it
    result = invoke("train", data, "-o", experiment, "--model", tiny_model_dir, *FAST, *extra)
    assert_user_error(result, f"{experiment}: the output folder holds the input file {data}", "--output folder")
    assert data.read_bytes() == original
    assert snapshot(tmp_path) == before


def test_train_refuses_to_replace_its_validation_config_class_weights_or_base_model(tmp_path, tiny_model_dir):
    data = write_csv(tmp_path / "train.csv", n=40)
    validation = write_csv(tmp_path / "out" / "val.csv", n=20)
    result = invoke("train", data, "-o", tmp_path / "out", "--validation", validation, "--model", tiny_model_dir, *FAST)
    assert_user_error(result, f"holds the input file {validation}")

    config = tmp_path / "exp" / "run.yaml"
    config.parent.mkdir()
    config.write_text("train:\n  epochs: 1\n", encoding="utf-8")
    result = invoke("train", data, "-o", config.parent, "--config", config, "--model", tiny_model_dir, "--overwrite")
    assert_user_error(result, f"holds the input file {config}")
    assert config.is_file()

    weights = tmp_path / "exp2" / "weights.yaml"
    weights.parent.mkdir()
    weights.write_text("negative: 1.0\npositive: 2.0\n", encoding="utf-8")
    result = invoke("train", data, "-o", weights.parent, "--class-weights", weights, "--model", tiny_model_dir,
                    "--overwrite", *FAST)  # fmt: skip
    assert_user_error(result, f"holds the input file {weights}")
    assert weights.is_file()

    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    result = invoke("train", data, "-o", base, "--model", base, *FAST, "--overwrite")
    assert_user_error(result, f"{base}: the output folder holds the input file {base}")
    assert (base / "model.safetensors").read_bytes() == (tiny_model_dir / "model.safetensors").read_bytes()


def test_evaluate_refuses_to_write_its_report_over_the_data(tmp_path, tiny_trained):
    data = write_csv(tmp_path / "test.csv")
    before = snapshot(tmp_path)
    result = invoke("evaluate", tiny_trained, data, "--output", data)
    assert_user_error(result, f"{data}: the output would overwrite the input file {data}", "--output file")
    assert snapshot(tmp_path) == before


def test_evaluate_refuses_to_write_over_the_models_own_files(tmp_path, tiny_trained):
    model = tmp_path / "model"
    shutil.copytree(tiny_trained, model)
    data = write_csv(tmp_path / "test.csv")
    before = snapshot(tmp_path)
    result = invoke("evaluate", model, data, "--output", model / "metrics.json")
    assert_user_error(result, f"would overwrite the input file {model / 'metrics.json'}")
    result = invoke("evaluate", model, data, "--report", model / "report")  # training's validation report
    assert_user_error(result, "--report folder", "(it writes report.html there)")
    assert snapshot(tmp_path) == before


def test_evaluate_writes_a_report_beside_its_data(tmp_path, tiny_trained):
    """Only what a report writes counts: a folder that also holds the data is a fine report folder."""
    from bertfit.evaluation.report import REPORT_FILES

    data = write_csv(tmp_path / "test.csv")
    original = data.read_bytes()
    result = invoke("evaluate", tiny_trained, data, "--report", tmp_path)
    assert result.exit_code == 0, result.output
    assert data.read_bytes() == original
    written = {p.name for p in tmp_path.iterdir()} - {"test.csv"}
    assert "report.html" in written and written <= set(REPORT_FILES), "REPORT_FILES must name every file written"


def test_explain_refuses_to_write_over_its_input_or_the_model(tmp_path, tiny_trained):
    model = tmp_path / "model"
    shutil.copytree(tiny_trained, model)
    page = tmp_path / "texts.html"  # not a table: the output check comes first
    page.write_text("<p>not mine to replace</p>", encoding="utf-8")
    before = snapshot(tmp_path)
    result = invoke("explain", model, "--input", page, "--output", page)
    assert_user_error(result, f"would overwrite the input file {page}")
    result = invoke("explain", model, "great movie", "--output", model / "report" / "report.html")
    assert_user_error(result, f"would overwrite the input file {model / 'report' / 'report.html'}")
    assert snapshot(tmp_path) == before
