"""Training logs: a JSON Lines log of every Trainer log call, the TensorBoard choice, and a training-curve PNG."""

from __future__ import annotations

import importlib.util
import json
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from bertfit.data.write import atomic_path
from bertfit.errors import MissingDependency
from bertfit.plots import new_figure

_FIELDS = ("step", "epoch", "time", "elapsed_s")


class JsonlLog(TrainerCallback):
    """Appends one JSON object per Trainer log call (train loss, eval metrics, ...) to a `.jsonl` file.

    Each line is flushed when written, so a run that is killed keeps every line it logged. On resume, call
    `trim_log(path, last_step)` first so that the steps replayed after the checkpoint are not logged twice.
    """

    def __init__(self, path: Path, started: float) -> None:
        """Log to `path`; `started` is the `time.time()` at which training began (for `elapsed_s`)."""
        self.path = Path(path)
        self.started = started

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero:
            return
        now = time.time()
        record: dict[str, Any] = {
            "step": state.global_step,
            "epoch": None if state.epoch is None else round(state.epoch, 4),
            "time": round(now, 3),
            "elapsed_s": round(now - self.started, 3),
        }
        # Trainer puts its own (unrounded) "epoch" in logs; the fields above win.
        record.update({k: _json_value(v) for k, v in (logs or {}).items() if k not in _FIELDS})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
            f.flush()


def _json_value(value: Any) -> Any:
    """numpy/torch scalars -> Python numbers, arrays -> lists; NaN and infinity -> null (strict JSON)."""
    if hasattr(value, "tolist"):  # numpy scalar or array, torch tensor
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def read_log(path: Path) -> list[dict]:
    """Read a JSON Lines training log.

    Args:
        path: The `.jsonl` file written by `JsonlLog`.

    Returns:
        One dict per line, in file order; lines that are not a JSON object (e.g. half-written by a killed run) are
        skipped.
    """
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        record = _parse(line)
        if record is not None:
            records.append(record)
    return records


def _parse(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def trim_log(path: Path, last_step: int) -> None:
    """Cut a training log back to a checkpoint before a resumed run appends to it.

    Keeps the lines whose `step` is at most `last_step` and drops the rest, including lines that cannot be parsed.
    The file is replaced atomically; nothing happens when it does not exist.

    Args:
        path: The `.jsonl` file written by `JsonlLog`.
        last_step: The global step of the checkpoint the run resumes from.
    """
    path = Path(path)
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines() if _step(line) <= last_step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def _step(line: str) -> float:
    """The `step` of a log line; infinity for a line that cannot be parsed or has no step (so it is dropped)."""
    step = (_parse(line) or {}).get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) else math.inf


def plot_training_curve(log_path: Path, png_path: Path, metric: str = "macro_f1") -> Path | None:
    """Draw training and validation loss (left) and the validation metric (right) against the optimizer step.

    Args:
        log_path: The `.jsonl` file written by `JsonlLog`.
        png_path: Where to write the PNG (replaced atomically; its folder is created).
        metric: The validation metric to plot, as logged without its `eval_` prefix.

    Returns:
        `png_path`, or None when the log holds no loss and no evaluation (then nothing is written).
    """
    records = read_log(log_path) if Path(log_path).is_file() else []
    metrics = [f"eval_{metric}"] + (["eval_accuracy"] if metric != "accuracy" else [])
    loss = {"training loss": _series(records, "loss"), "validation loss": _series(records, "eval_loss")}
    scores = {name.removeprefix("eval_").replace("_", " "): _series(records, name) for name in metrics}
    if not any(loss.values()) and not any(scores.values()):
        return None
    fig = new_figure(11, 4.2)
    left, right = fig.subplots(1, 2)
    _draw(left, loss, "Loss", "loss")
    _draw(right, scores, "Validation metrics", "score")
    fig.suptitle(f"Training curve ({Path(log_path).name})")
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return png_path


def _series(records: list[dict], key: str) -> list[tuple[int, float]]:
    """(step, value) of each line holding a number under `key`."""
    return [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float)) and "step" in r]


def _draw(ax: Any, series: dict[str, list[tuple[int, float]]], title: str, ylabel: str) -> None:
    for label, points in series.items():
        if points:
            steps, values = zip(*points)
            # The training loss is logged often: small dots; evaluations are few: a clear marker on each.
            ax.plot(steps, values, marker="." if label == "training loss" else "o", markersize=4, label=label)
    if any(series.values()):
        ax.legend()
    else:
        ax.text(0.5, 0.5, "nothing logged", ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_title(title)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def tensorboard_available() -> bool:
    """Whether the `tensorboard` package (needed by `torch.utils.tensorboard`) is installed."""
    return importlib.util.find_spec("tensorboard") is not None


def resolve_report_to(value: str) -> list[str]:
    """Turn the `report_to` option into the list that `TrainingArguments(report_to=...)` takes.

    Args:
        value: `auto` (TensorBoard when installed), `none` or empty (no integration), or comma-separated
            integration names such as `tensorboard` or `wandb,tensorboard`.

    Returns:
        Integration names, in the order given, without duplicates.

    Raises:
        MissingDependency: `tensorboard` was asked for and is not installed.
    """
    names: list[str] = []
    for name in (n.strip().lower() for n in (value or "").split(",")):
        if name == "auto":
            name = "tensorboard" if tensorboard_available() else ""
        elif name == "tensorboard" and not tensorboard_available():
            raise MissingDependency("tensorboard", "tensorboard", "Logging to TensorBoard (report_to tensorboard)")
        if name and name != "none" and name not in names:
            names.append(name)
    return names
