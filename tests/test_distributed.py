"""The Ray engine labels exactly like the local engine: same rows, same order, same predictions; folders of shards
in and out; CSV and JSON Lines through the CLI; user errors are one line and leave nothing behind. One local Ray
cluster (2 CPUs, conftest's ray_cluster) serves the module."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import Result
from conftest import long_text, multilabel_frame, pair_frame, sentiment_frame
from typer.testing import CliRunner

import bertfit
from bertfit.cli import app
from bertfit.data.io import read_table
from bertfit.data.write import write_table
from bertfit.errors import ConfigError, DataError, MissingDependency, ModelError
from bertfit.prediction.parts import OutputLock

ray = pytest.importorskip("ray", reason="the ray engine needs: pip install 'bertfit[ray]'")
from bertfit.prediction import ray_engine as distributed  # noqa: E402
from bertfit.prediction import ray_pipeline  # noqa: E402
from bertfit.prediction.ray_engine import predict_with_ray  # noqa: E402

PROBS = ["prob_negative", "prob_positive"]
RAY_ARGS = {"num_workers": 2, "cpus_per_worker": 1}  # two one-thread replicas on the 2-CPU test cluster
# The other tests use one replica: the order of windows dealt to two is checked by the first two tests, and
# each replica is a process that imports torch and transformers (seconds of CPU the other tests need).
ONE_REPLICA = {"num_workers": 1, "cpus_per_worker": 1}

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("restore_cli_state")


def unlabelled(n: int, seed: int) -> pd.DataFrame:
    """Texts with an id column (descending, so order must survive) and some empty texts of each kind."""
    df = sentiment_frame(n, seed).drop(columns="label")
    df.insert(0, "id", np.arange(10 * n, 0, -10))
    df.loc[df.index % 97 == 5, "text"] = None
    df.loc[df.index % 101 == 7, "text"] = "   "
    return df


def assert_same_predictions(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert got["id"].tolist() == want["id"].tolist()
    assert got["pred_label"].isna().tolist() == want["pred_label"].isna().tolist()
    assert got["pred_label"].dropna().tolist() == want["pred_label"].dropna().tolist()
    for col in ["pred_score", *[c for c in PROBS if c in want.columns]]:
        np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), atol=1e-5, equal_nan=True)


def leftovers(folder: Path, *keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.mark.slow  # a Ray cluster and its worker processes: seconds each
def test_ray_equals_local_engine(ray_cluster: None, tiny_trained: Path, tmp_path: Path) -> None:
    df = unlabelled(3000, seed=3)
    inp = tmp_path / "in.parquet"
    df.to_parquet(inp, index=False)
    args = {"probs": True, "dtype": "fp32", "max_length": 8}  # short max_length: some texts are truncated
    local = bertfit.predict_file(tiny_trained, inp, tmp_path / "local.parquet", **args)
    summary = predict_with_ray(tiny_trained, inp, tmp_path / "ray.parquet", **args, **RAY_ARGS, window=400)

    assert_same_predictions(pd.read_parquet(tmp_path / "ray.parquet"), pd.read_parquet(tmp_path / "local.parquet"))
    assert summary["rows"] == 3000 and summary["empty_text"] == local["empty_text"] > 0
    assert summary["truncated"] == local["truncated"] > 0
    assert (summary["labels"], summary["dtype"], summary["resumed_rows"]) == (local["labels"], "fp32", 0)
    assert (summary["engine"], summary["workers"]) == ("ray", 2)
    assert set(local) < set(summary)
    assert leftovers(tmp_path, "in.parquet", "local.parquet", "ray.parquet") == []


@pytest.mark.slow  # a Ray cluster and its worker processes: seconds each
def test_folder_of_shards_in_and_out(ray_cluster: None, tiny_trained: Path, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    parts = [unlabelled(n, seed) for seed, n in enumerate([500, 130, 370])]
    for i, part in enumerate(parts):
        part.to_parquet(shards / f"shard-{i}.parquet", index=False)
    whole = tmp_path / "whole.parquet"
    pd.concat(parts, ignore_index=True).to_parquet(whole, index=False)
    bertfit.predict_file(tiny_trained, whole, tmp_path / "local.parquet", dtype="fp32")

    summary = predict_with_ray(tiny_trained, shards, tmp_path / "labelled", dtype="fp32", **RAY_ARGS, window=150)

    names = sorted(p.name for p in (tmp_path / "labelled").iterdir())
    assert len(names) >= 3 and names == [f"part-{i:05d}.parquet" for i in range(len(names))]
    got = pd.concat([pd.read_parquet(tmp_path / "labelled" / n) for n in names], ignore_index=True)
    assert_same_predictions(got, pd.read_parquet(tmp_path / "local.parquet"))
    assert summary["rows"] == 1000 and summary["output"] == str(tmp_path / "labelled")
    assert leftovers(tmp_path, "shards", "whole.parquet", "local.parquet", "labelled") == []


@pytest.mark.slow  # a Ray cluster and its worker processes: seconds each
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_formats_through_the_cli(ray_cluster: None, tiny_trained: Path, tmp_path: Path, fmt: str) -> None:
    df = unlabelled(300, seed=4)
    df["id"] = [f"{i:05d}" for i in df["id"]]  # JSON keeps "03000" as text: so must the ray engine
    df.loc[3, "text"] = 'quoted, with a comma and a\nnew line "great"'
    df.loc[8, "text"] = "01"  # digits only: still a text
    inp, out = tmp_path / f"in.{fmt}", tmp_path / f"out.{fmt}"
    write_table(df, inp)
    bertfit.predict_file(tiny_trained, inp, tmp_path / f"local.{fmt}", dtype="fp32")

    args = ["predict", tiny_trained, inp, out, "--engine", "ray", "--num-workers", 1, "--dtype", "fp32", "--json"]
    result = runner.invoke(app, [str(a) for a in args])

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    got, want = read_table(out), read_table(tmp_path / f"local.{fmt}")
    exact = [c for c in want.columns if c != "pred_score"]  # scores: to float tolerance, below
    assert got[exact].to_dict("list") == want[exact].to_dict("list")  # the same file, value for value
    if fmt == "csv":  # an empty field is "" in CSV: an unscored row's empty prediction
        got, want = got.replace({"": None}), want.replace({"": None})
    assert_same_predictions(got, want)
    assert got["text"].tolist() == want["text"].tolist() and got.loc[3, "text"] == df.loc[3, "text"]
    empty = df["text"].isna() | (df["text"].str.strip() == "")
    assert got["pred_label"].isna().tolist() == empty.tolist() and isinstance(got.loc[8, "pred_label"], str)
    assert (summary["rows"], summary["empty_text"], summary["engine"]) == (300, int(empty.sum()), "ray")
    assert leftovers(tmp_path, inp.name, out.name, f"local.{fmt}") == []


# -- multi-label, sentence-pair and sliding-window models: one Ray call each, against the local engine -------------


def assert_same_frames(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """The same columns and rows, in order; every value equal (missing as None), scores to float tolerance."""
    assert list(got.columns) == list(want.columns) and len(got) == len(want)
    scores = [c for c in want.columns if c.startswith("prob_") or c == "pred_score"]
    exact = [c for c in want.columns if c not in scores]

    def values(frame: pd.DataFrame) -> dict[str, list]:
        return {c: [None if pd.isna(v) else v for v in frame[c]] for c in exact}

    assert values(got) == values(want)
    for col in scores:
        np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), atol=1e-5, equal_nan=True)


@pytest.mark.slow  # a Ray cluster and its worker processes: seconds each
def test_multi_label_model_with_a_threshold_into_a_folder(ray_cluster: None, multi_model, tmp_path: Path) -> None:
    df = multilabel_frame(240, seed=9).drop(columns="labels")
    df.insert(0, "id", np.arange(240, 0, -1))
    df.loc[[5, 100], "text"] = [None, " "]
    df.to_parquet(tmp_path / "in.parquet", index=False)
    model = multi_model.model_dir
    local = bertfit.predict_file(
        model, tmp_path / "in.parquet", tmp_path / "local.parquet", dtype="fp32", threshold=0.05
    )
    bertfit.predict_file(model, tmp_path / "in.parquet", tmp_path / "tuned.parquet", dtype="fp32")

    summary = predict_with_ray(model, tmp_path / "in.parquet", tmp_path / "labelled", dtype="fp32", threshold=0.05,
                               **ONE_REPLICA, window=50)  # fmt: skip

    names = sorted(p.name for p in (tmp_path / "labelled").iterdir())
    got = pd.concat([pd.read_parquet(tmp_path / "labelled" / n) for n in names], ignore_index=True)
    want, tuned = pd.read_parquet(tmp_path / "local.parquet"), pd.read_parquet(tmp_path / "tuned.parquet")
    assert len(names) >= 3 and "pred_labels" in want.columns and "pred_label" not in want.columns
    assert_same_frames(got, want)
    assert got["pred_labels"].isna().tolist() == [i in (5, 100) for i in range(240)]
    # 0.05 reached the replicas: every positive score is above it (the tuned thresholds give all four label sets)
    assert set(tuned["pred_labels"].dropna()) == {"", "negative", "positive", "negative,positive"}
    assert set(got["pred_labels"].dropna()) <= {"positive", "negative,positive"} and "negative,positive" in set(
        got["pred_labels"]
    )
    assert (summary["rows"], summary["empty_text"], summary["labels"]) == (240, 2, local["labels"])


def test_rows_left_unscored_are_counted_for_multi_label_models_too() -> None:
    """A file output's counts come from pred_labels when the model is multi-label ('' is a row with no labels)."""
    assert ray_pipeline._unscored(pd.DataFrame({"pred_labels": ["a", None, "", None, "a,b"]})) == 2
    assert ray_pipeline._unscored(pd.DataFrame({"pred_label": ["a", None], "pred_score": [0.9, None]})) == 1


@pytest.mark.slow  # a Ray cluster and its worker processes: seconds each
def test_pair_model_reads_both_texts_through_the_cli(ray_cluster: None, pair_model: Path, tmp_path: Path) -> None:
    df = pair_frame(200, seed=10).drop(columns="label")
    df.insert(0, "id", [f"{i:04d}" for i in range(200)])
    df.loc[3, "hypothesis"] = " "  # no second text: no prediction
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_table(df, inp)
    bertfit.predict_file(pair_model, inp, tmp_path / "local.jsonl", dtype="fp32", probs=True)

    args = ["predict", pair_model, inp, out, "--engine", "ray", "--num-workers", 1, "--window", 60, "--dtype", "fp32",
            "--probs", "--json"]  # fmt: skip
    result = runner.invoke(app, [str(a) for a in args])

    assert result.exit_code == 0, result.output
    got, want = read_table(out), read_table(tmp_path / "local.jsonl")
    assert_same_frames(got, want)
    assert got["pred_label"].isna().tolist() == [i == 3 for i in range(200)]
    assert json.loads(result.stdout)["empty_text"] == 1


@pytest.mark.slow  # a Ray cluster and its worker processes: seconds each
def test_sliding_window_model_with_overrides_through_the_cli(ray_cluster: None, sliding_model, tmp_path: Path) -> None:
    texts = [long_text(30 + i % 50, i) + (" great" if i % 2 else " awful") for i in range(150)]
    df = pd.DataFrame({"id": range(150), "text": texts})
    df.loc[7, "text"] = ""
    df.to_csv(tmp_path / "in.csv", index=False)
    model = sliding_model.model_dir
    overrides = {"stride": 3, "aggregate": "max"}
    local = bertfit.predict_file(model, tmp_path / "in.csv", tmp_path / "local.parquet", dtype="fp32", probs=True,
                                 **overrides)  # fmt: skip
    bertfit.predict_file(model, tmp_path / "in.csv", tmp_path / "trained.parquet", dtype="fp32", probs=True)

    args = ["predict", model, tmp_path / "in.csv", tmp_path / "out.parquet", "--engine", "ray", "--num-workers", 1,
            "--window", 40, "--dtype", "fp32", "--probs", "--stride", 3, "--aggregate", "max", "--json"]  # fmt: skip
    result = runner.invoke(app, [str(a) for a in args])

    assert result.exit_code == 0, result.output
    got, want = pd.read_parquet(tmp_path / "out.parquet"), pd.read_parquet(tmp_path / "local.parquet")
    assert_same_frames(got, want)  # one row per input row, its windows aggregated as the local engine does
    trained = pd.read_parquet(tmp_path / "trained.parquet")
    assert not np.allclose(got["pred_score"].fillna(0), trained["pred_score"].fillna(0))  # the overrides reached them
    summary = json.loads(result.stdout)
    assert (summary["rows"], summary["empty_text"], summary["truncated"]) == (150, 1, local["truncated"])
    assert local["truncated"] == 149


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.mark.parametrize("name", ["in.xlsx", "in.h5"])
def test_cli_unsupported_format(tiny_trained: Path, tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"not read: refused by its name")
    result = runner.invoke(
        app, ["predict", str(tiny_trained), str(tmp_path / name), str(tmp_path / "out.csv"), "--engine", "ray"]
    )
    assert_one_line_error(result, str(tmp_path / name), "Parquet", "--engine local")
    assert leftovers(tmp_path, name) == []


def test_cli_missing_input(tiny_trained: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["predict", str(tiny_trained), str(tmp_path / "nowhere.csv"), str(tmp_path / "out.csv"), "--engine", "ray"]
    )
    assert_one_line_error(result, "nowhere.csv", "file not found")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"text_cols": ["review"]}, DataError, "no column 'review'"),
        ({"dtype": "fp8"}, ConfigError, "precision must be one of"),
        ({"dtype": "fp16"}, ConfigError, "fp16 is for GPUs"),
        ({"batch_size": 0}, ConfigError, "batch_size must be at least 1"),
        ({"num_workers": 0}, ConfigError, "num_workers must be at least 1"),
        ({"model_dir": "no-model"}, ModelError, "model folder not found"),
        ({"long": "sliding", "stride": 100}, ConfigError, r"stride .* must be 0 to max_length / 2 = 64"),
        ({"aggregate": "median"}, ConfigError, "aggregate must be one of mean, max"),
        ({"threshold": 1.5}, ConfigError, "threshold must be between 0 and 1"),
    ],
    ids=[
        "text-col",
        "dtype",
        "fp16-on-cpu",
        "batch-size",
        "num-workers",
        "model-dir",
        "stride",
        "aggregate",
        "threshold",
    ],  # fmt: skip
)
def test_errors_before_ray_starts(
    tiny_trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict, error: type, match: str
) -> None:
    unlabelled(20, seed=5).to_parquet(tmp_path / "in.parquet", index=False)
    monkeypatch.setattr(distributed, "_import_ray", lambda: pytest.fail("Ray was reached"))
    args = {"model_dir": tiny_trained, "input_path": tmp_path / "in.parquet", "output_path": tmp_path / "out.csv"}
    with pytest.raises(error, match=match):
        predict_with_ray(**{**args, **change})
    assert leftovers(tmp_path, "in.parquet") == []


@contextmanager
def held_by_another_thread(output: Path) -> Iterator[None]:
    """OutputLock(output) held by another thread: refused like another process (test_predict_stream shows that)."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with OutputLock(output):
            held.set()
            release.wait(60)

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(30)
    try:
        yield
    finally:
        release.set()
        thread.join()


@pytest.mark.parametrize("name", ["out.parquet", "out_folder"])
def test_a_second_run_into_the_same_output_refuses_before_ray_starts(
    tiny_trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    unlabelled(20, seed=8).to_parquet(tmp_path / "in.parquet", index=False)
    out = tmp_path / name
    work = tmp_path / f".{name}.bertfit-{'parts' if out.suffix else 'ray'}"  # what the first run is writing
    work.mkdir()
    (work / "part-00000.parquet").write_bytes(b"the first run's")
    monkeypatch.setattr(distributed, "_import_ray", lambda: pytest.fail("Ray was reached"))
    with held_by_another_thread(out):
        holder = rf"{name}: another run is writing it \(bertfit predict, pid {os.getpid()} on "
        with pytest.raises(DataError, match=holder):
            predict_with_ray(tiny_trained, tmp_path / "in.parquet", out)
        result = runner.invoke(app, ["predict", str(tiny_trained), str(tmp_path / "in.parquet"), str(out),
                                     "--engine", "ray"])  # fmt: skip
        assert_one_line_error(result, f"pid {os.getpid()} on {socket.gethostname()}")
    assert (work / "part-00000.parquet").read_bytes() == b"the first run's"
    assert leftovers(tmp_path, "in.parquet", work.name) == []


@pytest.mark.slow  # a Ray cluster and its worker processes: seconds each
def test_error_in_a_worker_comes_back_as_itself(ray_cluster: None, tiny_trained: Path, tmp_path: Path) -> None:
    df = unlabelled(50, seed=6).assign(pred_label="x")  # the actors refuse to overwrite an input column
    df.to_parquet(tmp_path / "in.parquet", index=False)
    with pytest.raises(DataError, match="already has a column 'pred_label'") as caught:
        predict_with_ray(
            tiny_trained, tmp_path / "in.parquet", tmp_path / "out_folder", num_workers=1, cpus_per_worker=1
        )
    assert type(caught.value) is DataError and "\n" not in str(caught.value)
    assert leftovers(tmp_path, "in.parquet") == []
    deadline = time.monotonic() + 15  # the failed run's actors are gone: their CPUs are free for the next run
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 2


def test_without_ray_installed(tiny_trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unlabelled(20, seed=7).to_parquet(tmp_path / "in.parquet", index=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(MissingDependency, match=r"pip install 'bertfit\[ray\]'"):
        predict_with_ray(tiny_trained, tmp_path / "in.parquet", tmp_path / "out.parquet")


@pytest.mark.slow  # a Ray cluster and its worker processes: seconds each
def test_ray_actors_run_an_export_folder_with_its_own_engine(ray_cluster: None, tiny_trained: Path, tmp_path: Path):
    pytest.importorskip("onnxruntime", reason="the onnx engine needs: pip install 'bertfit[onnx]'")
    bertfit.export(tiny_trained, tmp_path / "onnx", "onnx")
    unlabelled(300, seed=4).to_parquet(tmp_path / "in.parquet", index=False)
    args = {"probs": True, "dtype": "fp32"}
    local = bertfit.predict_file(tiny_trained, tmp_path / "in.parquet", tmp_path / "local.parquet", **args)
    summary = predict_with_ray(tmp_path / "onnx", tmp_path / "in.parquet", tmp_path / "ray.parquet", **args,
                               **ONE_REPLICA)  # fmt: skip
    assert_same_predictions(pd.read_parquet(tmp_path / "ray.parquet"), pd.read_parquet(tmp_path / "local.parquet"))
    assert (summary["engine"], summary["rows"], local["engine"]) == ("ray", 300, "torch")
