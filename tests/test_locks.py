"""Parallel runs: two trainings on the same data share one token cache and one checks cache, built once and never
torn; a second training into an output that a running one is writing is refused at once, naming that process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import sentiment_frame
from safetensors.numpy import load_file
from typer.testing import CliRunner

from bertfit.cli import app

pytestmark = pytest.mark.usefixtures("restore_cli_state")

# Runs the CLI with the cache builders wrapped: each records that it ran, then waits (up to 4 s) for the other
# process to arrive at the same builder. Without a lock both arrive and both build; with one, the second waits at the
# lock and then finds the cache built, so each builder runs once.
COUNTED_CLI = r"""
import os, sys, time
from pathlib import Path
import bertfit.checks.checker, bertfit.data.cache
marks = Path(os.environ["BUILD_MARKS"])

def counted(module, name, what):
    original = getattr(module, name)
    def wrapper(*args, **kwargs):
        (marks / f"{what}-{os.getpid()}").touch()
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and len(list(marks.glob(f"{what}-*"))) < 2:
            time.sleep(0.05)
        return original(*args, **kwargs)
    setattr(module, name, wrapper)

counted(bertfit.data.cache, "_build", "tokens")
counted(bertfit.checks.checker, "check", "checks")
from bertfit.cli import main
sys.argv = ["bertfit", *sys.argv[1:]]
main()
"""


def train_args(data: Path, out: Path, model: Path, cache: Path, *extra: str) -> list[str]:
    return ["--quiet", "train", str(data), "-o", str(out), "--model", str(model), "--epochs", "3", "--lr", "3e-3",
            "--batch-size", "16", "--seed", "7", "--precision", "fp32", "--report-to", "none",
            "--cache-dir", str(cache), "--json", *extra]  # fmt: skip


def test_two_trainings_on_the_same_data_build_each_cache_once(tiny_model_dir, tmp_path):
    data = tmp_path / "train.csv"
    sentiment_frame(400, seed=11).to_csv(data, index=False)
    cache, marks = tmp_path / "cache", tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BUILD_MARKS": str(marks)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", COUNTED_CLI, *train_args(data, tmp_path / name, tiny_model_dir, cache)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for name in ("a", "b")
    ]
    results = [proc.communicate(timeout=600) for proc in procs]
    for proc, (_, stderr) in zip(procs, results):
        assert proc.returncode == 0, stderr
    assert len(list(marks.glob("tokens-*"))) == 1, "the token cache was built by both runs"
    assert len(list(marks.glob("checks-*"))) == 1, "the data checks were run by both runs"
    entries = [p for p in (cache / "tokens").iterdir() if not p.name.endswith(".lock")]
    assert len(entries) == 1 and (entries[0] / "meta.json").is_file(), entries

    metrics = [{k: json.loads(stdout)[k] for k in ("accuracy", "macro_f1", "mcc")} for stdout, _ in results]
    assert metrics[0]["accuracy"] >= 0.85 and metrics[0] == metrics[1]
    weights = [load_file(tmp_path / name / "model.safetensors") for name in ("a", "b")]
    assert all((weights[0][k] == weights[1][k]).all() for k in weights[0]), "the same data and seed, other weights"


def test_a_second_training_into_the_same_output_is_refused_at_once(tiny_model_dir, tmp_path):
    data = tmp_path / "train.csv"
    sentiment_frame(320, seed=12).to_csv(data, index=False)
    out, cache = tmp_path / "model", tmp_path / "cache"
    script = Path(sys.executable).parent / "bertfit"
    first = subprocess.Popen(
        [str(script), *train_args(data, out, tiny_model_dir, cache, "--epochs", "6")],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    owner = out.parent / f".{out.name}.bertfit-work" / "owner.json"
    deadline = time.monotonic() + 300
    while not owner.is_file() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert owner.is_file(), first.communicate()

    # Data the second run cannot read: had it got past the lock it would fail on the data, not on the lock.
    other = tmp_path / "other.csv"
    other.write_text("body,label\nfine,positive\n", encoding="utf-8")
    second = CliRunner().invoke(app, train_args(other, out, tiny_model_dir, cache))
    assert first.poll() is None, "the first run ended before the second started; the test proves nothing"
    assert second.exit_code == 2, second.output
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in second.output, second.stderr
    assert f"{out}: another bertfit run is training into this folder (pid {first.pid} on host" in lines[0]
    assert socket.gethostname() in lines[0] and "choose another --output" in lines[0]

    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr
    assert json.loads(stdout)["accuracy"] >= 0.85 and (out / "bertfit.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "model", "other.csv", "train.csv"]
