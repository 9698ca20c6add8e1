"""Crash safety: a training run killed with SIGKILL mid-epoch and run again ends exactly where an uninterrupted
run ends; half-written checkpoints are never resumed from; a run with other settings is refused (never started over
on its own), except for operational settings (when checkpoints are written, where progress goes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Stop, sentiment_frame, stop_after
from safetensors.numpy import load_file
from typer.testing import CliRunner

import bertfit
from bertfit.cli import app
from bertfit.config import RunConfig
from bertfit.errors import DataError
from bertfit.training.checkpoints import CommitCheckpoints, complete_checkpoints, run_identity

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


@pytest.fixture(scope="module")
def small_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("resume-small")
    sentiment_frame(160, seed=3).to_parquet(folder / "train.parquet")  # 10 optimizer steps per epoch
    sentiment_frame(40, seed=4).to_parquet(folder / "val.parquet")
    return folder / "train.parquet", folder / "val.parquet"


SMALL = dict(epochs=2, lr=3e-3, batch_size=16, warmup=0.1, save_every="3", keep_checkpoints=2, report_to="none",
             seed=7, precision="fp32", progress=False)  # fmt: skip


def test_operational_settings_may_change_when_a_run_is_continued(tiny_model_dir, small_files, tmp_path, monkeypatch):
    data, val = small_files
    kwargs = dict(validation=val, model=str(tiny_model_dir), **SMALL)
    reference = bertfit.train(data, tmp_path / "reference", **kwargs)
    out = tmp_path / "model"
    with monkeypatch.context() as m:
        m.setattr(CommitCheckpoints, "on_save", stop_after(12))
        with pytest.raises(Stop):
            bertfit.train(data, out, **kwargs)
    assert [p.name for p in complete_checkpoints(work_dir(out) / "checkpoints")][-1] == "checkpoint-12"

    changed = {**kwargs, "save_every": "30m", "keep_checkpoints": 1, "report_to": "tensorboard"}
    result = bertfit.train(data, out, **changed)
    assert result.resumed_from_step == 12, "changing only when checkpoints are written must not start over"
    assert (out / "tensorboard").is_dir(), "the new --report-to applies to the continued run"
    weights = [load_file(m / "model.safetensors") for m in (tmp_path / "reference", out)]
    assert all((weights[0][k] == weights[1][k]).all() for k in weights[0]), "continued weights differ"
    assert result.metrics["macro_f1"] == reference.metrics["macro_f1"]
    assert not work_dir(out).exists()


def interrupt_cli(cmd: list[str], monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    with monkeypatch.context() as m:
        m.setattr(CommitCheckpoints, "on_save", stop_after(step))
        result = CliRunner().invoke(app, cmd)
    assert isinstance(result.exception, Stop), result.output


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


@pytest.mark.usefixtures("restore_cli_state")
def test_changed_lr_is_refused_in_one_line_and_the_checkpoints_are_kept(
    tiny_model_dir, small_files, tmp_path, monkeypatch
):
    data, val = small_files
    out = tmp_path / "model"
    cmd = [str(a) for a in train_cmd(tiny_model_dir, data, val, out)[1:]]  # in-process: no script name
    cmd[cmd.index("--epochs") + 1] = "2"
    interrupt_cli(cmd, monkeypatch, 12)
    before = snapshot(work_dir(out))
    assert "checkpoints/checkpoint-10/bertfit-complete" in before

    for extra in ([], ["--resume"]):
        result = CliRunner().invoke(app, [*cmd, "--lr", "1e-3", *extra])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
        assert "lr 0.003 -> 0.001" in lines[0] and "--restart" in lines[0], lines[0]
        assert "epochs" not in lines[0] and "seed" not in lines[0], "only the settings that differ are named"
        assert snapshot(work_dir(out)) == before, "a refused run must leave the work folder as it was"
        assert not out.exists()

    result = CliRunner().invoke(app, [*cmd, "--lr", "1e-3", "--restart"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["resumed_from_step"] is None and (out / "model.safetensors").is_file()
    assert not work_dir(out).exists()


def test_patience_may_grow_but_not_shrink_when_a_run_is_continued(tiny_model_dir, small_files, tmp_path, monkeypatch):
    data, val = small_files
    out = tmp_path / "model"
    kwargs = dict(validation=val, model=str(tiny_model_dir), **{**SMALL, "epochs": 3}, patience=2)
    with monkeypatch.context() as m:
        m.setattr(CommitCheckpoints, "on_save", stop_after(12))
        with pytest.raises(Stop):
            bertfit.train(data, out, **kwargs)
    with pytest.raises(DataError, match=r"patience 2 -> 1 .*--restart"):
        bertfit.train(data, out, **{**kwargs, "patience": 1})
    assert complete_checkpoints(work_dir(out) / "checkpoints")
    assert bertfit.train(data, out, **{**kwargs, "patience": 3}).resumed_from_step == 12


def test_the_identity_holds_what_changes_the_result_and_nothing_else():
    base = RunConfig().validate()
    identity = run_identity(base, base_model="m")
    operational = dict(save_every="30m", keep_checkpoints=5, report_to="none", eval_batch_size=7,
                       thresholds="global", allow_pickle=True, trust_remote_code=True, patience=4)  # fmt: skip
    for key, value in operational.items():
        assert run_identity(base.override({key: value}), base_model="m") == identity, key
    result = dict(lr=1e-3, epochs=4, batch_size=8, seed=1, grad_accum=2, warmup=0.2, weight_decay=0.1,
                  scheduler="exponential", max_steps=9, best_metric="loss", class_weights="auto", max_length=64,
                  long="sliding", label_col="y", text_cols="body", val_fraction=0.2, label_sep=";",
                  group_by_length=False)  # fmt: skip
    for key, value in result.items():
        assert run_identity(base.override({key: value}), base_model="m") != identity, key


def test_trainer_args_are_part_of_the_identity(tiny_model_dir, small_files, tmp_path, monkeypatch):
    data, val = small_files
    out = tmp_path / "model"
    kwargs = dict(validation=val, model=str(tiny_model_dir), **SMALL, trainer_args={"lr_scheduler_type": "cosine"})
    with monkeypatch.context() as m:
        m.setattr(CommitCheckpoints, "on_save", stop_after(12))
        with pytest.raises(Stop):
            bertfit.train(data, out, **kwargs)
    with pytest.raises(DataError, match=r"trainer_args .*cosine.* -> null.*--restart"):
        bertfit.train(data, out, **{**kwargs, "trainer_args": None})
    with pytest.raises(DataError, match=r"trainer_args .*cosine.*constant"):
        bertfit.train(data, out, **{**kwargs, "trainer_args": {"lr_scheduler_type": "constant"}})
    assert bertfit.train(data, out, **kwargs).resumed_from_step == 12
