"""Crash safety for training: checkpoints every N steps or minutes, committed atomically, the newest K kept, and
the run's work folder reused when the same command is run again.

transformers.Trainer writes a checkpoint in place, so a kill during a save leaves a folder that looks complete
enough for `resume_from_checkpoint=True` to pick. bertfit therefore marks a checkpoint complete only after Trainer
has finished writing it (a marker file, itself written by rename), resumes only from marked checkpoints, and
deletes old checkpoints itself, after the new one is marked.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from bertfit.config import RunConfig, parse_save_every
from bertfit.data.locks import RUN_FILE, clear_work
from bertfit.data.write import write_json
from bertfit.errors import DataError

logger = logging.getLogger(__name__)

COMPLETE = "bertfit-complete"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


class SaveEvery(TrainerCallback):
    """Asks Trainer for a checkpoint every N optimizer steps or every N seconds, on top of the one per epoch."""

    def __init__(self, spec: str) -> None:
        self.mode, self.every = parse_save_every(spec)
        self.last = time.monotonic()

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.mode == "steps" and state.global_step % int(self.every) == 0:
            control.should_save = True
        elif self.mode == "seconds" and _first_process_says(time.monotonic() - self.last >= self.every):
            control.should_save = True

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.last = time.monotonic()


def _first_process_says(due: bool) -> bool:
    """Under DDP every process must save at the same step (saving waits at a barrier), and clocks differ a little:
    the first process decides, the others follow."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    if PartialState().num_processes == 1:
        return due
    return bool(broadcast_object_list([due], from_process=0)[0])


class CommitCheckpoints(TrainerCallback):
    """After each save: mark the new checkpoint complete, then keep only the newest `keep` (and the best one)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        tmp = folder / f".{COMPLETE}.tmp"
        tmp.write_text(json.dumps({"step": state.global_step, "epoch": state.epoch}), encoding="utf-8")
        os.replace(tmp, folder / COMPLETE)
        best = Path(state.best_model_checkpoint).resolve() if state.best_model_checkpoint else None
        done = complete_checkpoints(Path(args.output_dir))
        for old in done[: max(0, len(done) - self.keep)]:
            if old.resolve() != best:
                shutil.rmtree(old, ignore_errors=True)


def complete_checkpoints(folder: Path) -> list[Path]:
    """Marked checkpoints, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.fullmatch(p.name))]
    return [p for _, p in sorted(found) if (p / COMPLETE).is_file()]


def drop_incomplete(folder: Path) -> None:
    """Remove checkpoints a kill interrupted while they were being written."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if _CHECKPOINT.fullmatch(path.name) and not (path / COMPLETE).is_file():
            logger.info("removing %s: it was not completely written", path)
            shutil.rmtree(path, ignore_errors=True)


# Settings that do not change what a run computes: they may differ between an interrupted run and the run that
# continues it. Every other setting (a new one too) must match for a checkpoint to be continued.
OPERATIONAL = frozenset(
    {
        "save_every",  # when checkpoints are written,
        "keep_checkpoints",  # how many are kept,
        "report_to",  # where progress is reported
        "eval_batch_size",  # validation rows scored at once: the same scores, up to float rounding
        "thresholds",  # multi-label thresholds are chosen after training, from the final model
        "allow_pickle",  # permissions: the data and base model they let in are part of the identity
        "trust_remote_code",
        "model",  # recorded as the base model that was resolved
        "patience",  # may grow, not shrink: see _longest_patience
    }
)
DATA_KEYS = {"train_data": "the training data", "val_data": "the validation data", "rows": "the row counts"}
RUN_FORMAT = 2


def run_identity(cfg: RunConfig, **resolved: Any) -> dict[str, Any]:
    """What a checkpoint's result depends on: every setting that is not OPERATIONAL, by its flat name, with the
    values this run resolved (`resolved`: base model, learning rate, precision, max length, data, processes)."""
    sections = (cfg.data, cfg.model, cfg.train)
    run = {f.name: getattr(s, f.name) for s in sections for f in fields(s) if f.name not in OPERATIONAL}
    run.update(resolved)
    return json.loads(json.dumps(run, default=str))


def prepare_work(work: Path, run: dict[str, Any], patience: int, resume: bool | None, output_dir: Path) -> Path | None:
    """The checkpoint to continue from, or None after emptying the work folder for a fresh start.

    `run` identifies the run (run_identity); a checkpoint is continued only by the same run. resume=None continues
    when possible, True insists on continuing, False always starts over (the user's explicit --restart: the only
    case in which an interrupted run's checkpoints are deleted). A run whose settings differ from the interrupted
    one's is refused with the differences, and the work folder is left as it is.
    """
    saved = _read_run(work)
    checkpoints = complete_checkpoints(work / "checkpoints") if saved is not None else []
    if resume is True and not checkpoints:
        raise DataError(
            f"{output_dir}: cannot resume: no finished checkpoint of an interrupted run was found in {work}; "
            "run again without --resume to start over"
        )
    if resume is False or not checkpoints:
        clear_work(work)
        _write_run(work, run, patience)
        return None
    changed = _differences(saved, run, patience)
    if changed:
        raise DataError(
            f"{output_dir}: cannot continue the interrupted run in {work}: {'; '.join(changed)}; "
            "use its settings to continue it, or pass --restart to start over (deletes its checkpoints)"
        )
    drop_incomplete(work / "checkpoints")
    _write_run(work, run, _longest_patience(saved["patience"], patience))
    latest = checkpoints[-1]
    logger.info("resuming from %s", latest)
    return latest


def _differences(saved: dict[str, Any], run: dict[str, Any], patience: int) -> list[str]:
    """What differs between the interrupted run and this one, in words: 'lr 0.003 -> 0.001'."""
    if saved.get("format") != RUN_FORMAT:
        return ["it was started by another version of bertfit"]
    old = saved["identity"]
    changed = []
    for key in sorted(set(old) | set(run)):
        if old.get(key) == run.get(key):
            continue
        if key in DATA_KEYS:
            changed.append(f"{DATA_KEYS[key]} changed")
        else:
            changed.append(f"{key} {_shown(old.get(key))} -> {_shown(run.get(key))}")
    if _longest_patience(saved["patience"], patience) != patience:
        changed.append(
            f"patience {saved['patience']} -> {patience} (a continued run may wait longer for an improvement, "
            "not less; 0 waits for ever)"
        )
    return changed


def _longest_patience(old: int, new: int) -> int:
    """The patience a continued run must keep at least: the longest so far (0 means no early stopping)."""
    return 0 if 0 in (old, new) else max(old, new)


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _write_run(work: Path, run: dict[str, Any], patience: int) -> None:
    entry = {"format": RUN_FORMAT, "identity": run, "patience": patience}
    write_json(entry, work / RUN_FILE)


def _read_run(work: Path) -> dict[str, Any] | None:
    try:
        return json.loads((work / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
