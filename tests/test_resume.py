"""Crash safety: a training run killed with SIGKILL mid-epoch and run again ends exactly where an uninterrupted
run ends; half-written checkpoints are never resumed from; changed settings are not resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import sentiment_frame
from safetensors.numpy import load_file

from bertfit.checkpoints import COMPLETE, complete_checkpoints

STEPS_PER_EPOCH = 50  # 800 rows / batch 16


def train_cmd(model: Path, data: Path, val: Path, out: Path, *extra: str) -> list[str]:
    script = Path(sys.executable).parent / "bertfit"
    return [
        str(script), "--quiet", "train", str(data), "-o", str(out), "--validation", str(val), "--model", str(model),
        "--epochs", "3", "--lr", "3e-3", "--batch-size", "16", "--warmup", "0.1", "--save-every", "5",
        "--precision", "fp32", "--report-to", "none", "--seed", "7", "--json", *extra,
    ]  # fmt: skip


def work_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.bertfit-work"


def run(cmd: list[str]) -> dict:
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("resume-data")
    sentiment_frame(800, seed=3).to_parquet(folder / "train.parquet")
    sentiment_frame(200, seed=4).to_parquet(folder / "val.parquet")
    return folder / "train.parquet", folder / "val.parquet"


def test_killed_run_resumes_to_the_uninterrupted_result(tiny_model_dir, files, tmp_path):
    data, val = files
    reference = run(train_cmd(tiny_model_dir, data, val, tmp_path / "reference"))
    assert reference["resumed_from_step"] is None

    out = tmp_path / "model"
    cmd = train_cmd(tiny_model_dir, data, val, out)
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL)
    checkpoints = work_dir(out) / "checkpoints"
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        done = complete_checkpoints(checkpoints)
        if done and int(done[-1].name.split("-")[1]) >= STEPS_PER_EPOCH + 20:  # well inside epoch 2
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the run finished before it could be killed; the test proves nothing"
    last = int(complete_checkpoints(checkpoints)[-1].name.split("-")[1])
    assert STEPS_PER_EPOCH < last < 2 * STEPS_PER_EPOCH

    # A checkpoint a kill interrupted while it was written: newer, but never marked complete.
    torn = checkpoints / "checkpoint-999"
    torn.mkdir()
    (torn / "trainer_state.json").write_text('{"global_step": 999, "log_hi')

    resumed = run(cmd)
    assert resumed["resumed_from_step"] == last
    assert not torn.exists() and not work_dir(out).exists()
    for key in ("accuracy", "macro_f1", "mcc"):
        assert resumed[key] == reference[key], key
    metrics = [json.loads((m / "metrics.json").read_text()) for m in (tmp_path / "reference", out)]
    assert [h["eval_loss"] for h in metrics[0]["history"]] == [h["eval_loss"] for h in metrics[1]["history"]]
    weights = [load_file(m / "model.safetensors") for m in (tmp_path / "reference", out)]
    assert weights[0].keys() == weights[1].keys()
    assert all((weights[0][k] == weights[1][k]).all() for k in weights[0]), "resumed weights differ"
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    steps = [e["step"] for e in log if "loss" in e]
    assert steps == sorted(set(steps)), "the resumed log repeats or reorders steps"


def test_changed_settings_are_not_resumed(tiny_model_dir, files, tmp_path):
    data, val = files
    out = tmp_path / "model"
    work = work_dir(out)
    checkpoints = work / "checkpoints"
    cmd = train_cmd(tiny_model_dir, data, val, out)
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while proc.poll() is None and not complete_checkpoints(checkpoints) and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert complete_checkpoints(checkpoints) and not out.exists()

    changed = [*cmd[:-1], "--lr", "1e-3", "--json"]
    done = subprocess.run([*changed, "--resume"], capture_output=True, text=True)
    assert done.returncode == 2 and "cannot resume" in done.stderr and "settings or data have changed" in done.stderr
    assert complete_checkpoints(checkpoints), "a refused resume must not delete the checkpoints"
    assert all((p / COMPLETE).is_file() for p in complete_checkpoints(checkpoints))

    started_over = run([*changed[:-1], "--restart", "--json"])
    assert started_over["resumed_from_step"] is None and (out / "model.safetensors").is_file()
