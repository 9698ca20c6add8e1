"""Training logs: JSON Lines callback, trimming on resume, training-curve PNG, report_to resolution, TensorBoard."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bertfit.errors import BertfitError, MissingDependency
from bertfit.training import tracking
from bertfit.training.tracking import JsonlLog, plot_training_curve, read_log, resolve_report_to, trim_log


def state(step: int, epoch: float | None = None, main: bool = True) -> SimpleNamespace:
    return SimpleNamespace(is_world_process_zero=main, global_step=step, epoch=epoch)


def write_lines(path: Path, records: list[dict], tail: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail, encoding="utf-8")


def fake_run(path: Path, steps: int = 40, eval_every: int = 10) -> None:
    """A log like Trainer's: a loss every 5 steps, an evaluation every `eval_every` steps, a summary at the end."""
    records = []
    for step in range(5, steps + 1, 5):
        records.append({"step": step, "epoch": step / 20, "loss": 1.0 / step, "learning_rate": 1e-4})
        if step % eval_every == 0:
            f1 = 0.5 + step / (2 * steps)
            records.append({"step": step, "eval_loss": 0.9 / step, "eval_macro_f1": f1, "eval_accuracy": f1 + 0.02})
    records.append({"step": steps, "train_runtime": 12.5, "train_loss": 0.1})
    write_lines(path, records)


def test_jsonl_log_writes_one_line_per_call(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "train.jsonl"  # the folder does not exist yet
    started = time.time() - 2.0
    log = JsonlLog(path, started)
    log.on_log(None, state(5, 0.123456789), None, logs={"loss": 0.75, "grad_norm": np.float32(1.5), "epoch": 0.1234})
    log.on_log(None, state(10, 0.25), None, logs={"eval_loss": torch.tensor(0.5), "eval_macro_f1": np.float64(0.8)})
    log.on_log(None, state(10, None), None, logs={"loss": float("nan"), "counts": np.array([1, 2])})

    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert "NaN" not in lines[2]  # strict JSON (json.loads would accept NaN, so check the text)
    assert list(first)[:4] == ["step", "epoch", "time", "elapsed_s"]
    assert first["step"] == 5 and first["epoch"] == 0.1235  # state.epoch, rounded, wins over the logs' epoch
    assert first["loss"] == 0.75 and first["grad_norm"] == 1.5 and isinstance(first["grad_norm"], float)
    assert abs(first["time"] - time.time()) < 60 and first["time"] == round(first["time"], 3)
    assert 2.0 <= first["elapsed_s"] < 60
    assert second["step"] == 10 and second["eval_loss"] == 0.5 and second["eval_macro_f1"] == 0.8
    assert third["epoch"] is None and third["loss"] is None and third["counts"] == [1, 2]
    assert read_log(path) == [first, second, third]


def test_jsonl_log_only_on_main_process(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    JsonlLog(path, time.time()).on_log(None, state(5, 0.1, main=False), None, logs={"loss": 0.5})
    assert not path.exists()


def test_trim_log_drops_later_steps_and_a_half_written_line(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    records = [{"step": s, "loss": 1 / s} for s in (5, 10, 15, 20)] + [{"step": 20, "eval_loss": 0.3}]
    write_lines(path, records, tail='{"step": 25, "lo')  # killed mid-line
    assert len(read_log(path)) == 5  # the broken line is skipped when reading

    trim_log(path, 15)
    assert read_log(path) == records[:3]
    assert path.read_text(encoding="utf-8").endswith("\n")
    assert [p.name for p in tmp_path.iterdir()] == ["train.jsonl"]  # no temporary file left behind

    trim_log(path, 100)  # nothing later than the checkpoint: unchanged
    assert read_log(path) == records[:3]


def test_trim_log_without_a_log_is_a_no_op(tmp_path: Path) -> None:
    trim_log(tmp_path / "missing.jsonl", 10)
    assert not (tmp_path / "missing.jsonl").exists()


def test_resume_appends_after_trim(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    log = JsonlLog(path, time.time())
    for step in (5, 10, 15):
        log.on_log(None, state(step), None, logs={"loss": 1 / step})
    trim_log(path, 10)  # resumed from checkpoint-10: step 15 is trained and logged again
    JsonlLog(path, time.time()).on_log(None, state(15), None, logs={"loss": 0.07})
    assert [(r["step"], r["loss"]) for r in read_log(path)] == [(5, 0.2), (10, 0.1), (15, 0.07)]


def test_plot_training_curve_writes_a_png(tmp_path: Path) -> None:
    from matplotlib.image import imread

    log_path = tmp_path / "train.jsonl"
    fake_run(log_path)
    png = tmp_path / "report" / "training_curve.png"
    assert plot_training_curve(log_path, png) == png

    pixels = imread(png)
    height, width = pixels.shape[:2]
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    assert 300 <= height <= 1000 and 800 <= width <= 2000 and width > 1.5 * height  # two panels side by side
    assert pixels[..., :3].std() > 0.05  # not one colour
    assert len(np.unique(pixels[..., :3].reshape(-1, 3), axis=0)) > 20  # lines, text, markers in several colours
    assert sorted(p.name for p in png.parent.iterdir()) == ["training_curve.png"]  # no temporary file left


def test_plot_training_curve_with_training_loss_only(tmp_path: Path) -> None:
    log_path = tmp_path / "train.jsonl"
    write_lines(log_path, [{"step": s, "loss": 1 / s} for s in (1, 2, 3)])
    assert plot_training_curve(log_path, tmp_path / "curve.png", metric="accuracy") == tmp_path / "curve.png"
    assert (tmp_path / "curve.png").stat().st_size > 1000


@pytest.mark.parametrize("records", [[], [{"step": 10, "train_runtime": 3.0, "train_loss": 0.4}]])
def test_plot_training_curve_without_loss_or_evaluation(tmp_path: Path, records: list[dict]) -> None:
    log_path = tmp_path / "train.jsonl"
    write_lines(log_path, records)
    assert plot_training_curve(log_path, tmp_path / "curve.png") is None
    assert plot_training_curve(tmp_path / "missing.jsonl", tmp_path / "curve.png") is None
    assert not (tmp_path / "curve.png").exists()


def test_plot_training_curve_does_not_switch_the_pyplot_backend(tmp_path: Path) -> None:
    import matplotlib

    before = matplotlib.rcParams["backend"]
    fake_run(tmp_path / "train.jsonl")
    plot_training_curve(tmp_path / "train.jsonl", tmp_path / "curve.png")
    assert matplotlib.rcParams["backend"] == before
    assert "matplotlib.pyplot" not in sys.modules or not sys.modules["matplotlib.pyplot"].get_fignums()


@pytest.mark.parametrize(
    ("value", "available", "expected"),
    [
        ("auto", True, ["tensorboard"]),
        ("auto", False, []),
        ("none", True, []),
        ("", True, []),
        ("tensorboard", True, ["tensorboard"]),
        ("wandb", False, ["wandb"]),
        (" wandb , tensorboard ", True, ["wandb", "tensorboard"]),
        ("tensorboard,tensorboard", True, ["tensorboard"]),
    ],
)
def test_resolve_report_to(monkeypatch: pytest.MonkeyPatch, value: str, available: bool, expected: list[str]) -> None:
    monkeypatch.setattr(tracking, "tensorboard_available", lambda: available)
    assert resolve_report_to(value) == expected


def test_resolve_report_to_tensorboard_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # find_spec reports a module set to None as missing
    assert tracking.tensorboard_available() is False
    assert resolve_report_to("auto") == []
    for value in ("tensorboard", "wandb,tensorboard"):
        with pytest.raises(MissingDependency) as err:
            resolve_report_to(value)
        assert isinstance(err.value, BertfitError)
        message = str(err.value)
        assert "\n" not in message and "pip install 'bertfit[tensorboard]'" in message and "tensorboard" in message


def test_tensorboard_callback_writes_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from transformers.integrations import TensorBoardCallback

    assert tracking.tensorboard_available()
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    callback = TensorBoardCallback()  # builds its torch.utils.tensorboard.SummaryWriter on the first log
    for step, loss in ((5, 0.9), (10, 0.6)):
        callback.on_log(None, state(step), None, logs={"loss": loss, "learning_rate": 1e-4})
    callback.on_train_end(None, state(10), None)

    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    scalars = acc.Scalars("train/loss")  # Trainer's rewrite_logs puts training values under train/
    assert [s.step for s in scalars] == [5, 10]
    assert [round(s.value, 4) for s in scalars] == [0.9, 0.6]
