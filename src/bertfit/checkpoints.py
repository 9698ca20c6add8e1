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
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .config import parse_save_every
from .errors import DataError
from .locks import RUN_FILE, clear_work

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


def prepare_work(work: Path, run: dict[str, Any], resume: bool | None, output_dir: Path) -> Path | None:
    """The checkpoint to continue from, or None after emptying the work folder for a fresh start.

    `run` identifies the run (settings, data, base model); a checkpoint is reused only by the same run.
    resume=None continues when possible, True insists on continuing, False always starts over.
    """
    saved = _read_run(work)
    same = saved == run
    checkpoints = complete_checkpoints(work / "checkpoints") if same else []
    if resume is True and not checkpoints:
        why = "its settings or data have changed" if saved and not same else "no finished checkpoint was found"
        raise DataError(
            f"{output_dir}: cannot resume the interrupted run ({why}); run again without --resume to start over"
        )
    if resume is False or not checkpoints:
        if saved and not same and resume is None:
            logger.warning("%s: settings or data differ from the interrupted run; starting over", output_dir)
        clear_work(work)
        (work / RUN_FILE).write_text(json.dumps(run, indent=1, sort_keys=True), encoding="utf-8")
        return None
    drop_incomplete(work / "checkpoints")
    latest = checkpoints[-1]
    logger.info("resuming from %s", latest)
    return latest


def _read_run(work: Path) -> dict[str, Any] | None:
    try:
        return json.loads((work / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
