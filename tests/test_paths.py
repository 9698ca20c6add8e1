"""Outputs never write over inputs: the rule (paths.check_not_input)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from conftest import sentiment_frame

from bertfit.errors import DataError
from bertfit.paths import check_not_input, model_files


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
