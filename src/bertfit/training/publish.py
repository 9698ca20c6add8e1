"""Putting a finished model folder in place so that the output path always holds a complete model, old or new.

The new folder is staged completely in the work folder (work/model, bertfit.json written last), then a journal
(work/publish.json) records it by device and inode, and the folders are swapped:

- on Linux with one atomic `renameat2(RENAME_EXCHANGE)`: the output is the new model, work/model the old one;
- elsewhere (or where the file system cannot exchange) with two renames: the old folder to work/old, the new one
  into place; a failure of the second puts the old one back.

Only then is the work folder emptied (the journal last). A run killed anywhere in between leaves the journal, and the
next run into the same output (`recover`) finds which folder is the new one by its inode and finishes the swap.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

from bertfit.data.locks import JOURNAL_FILE, RUN_FILE, clear_work

logger = logging.getLogger(__name__)

STAGED = "model"  # work/model: the new model folder, complete before the swap (afterwards the old one, if any)
OLD = "old"  # work/old: the old model between the two renames of the fallback swap
CRASH_HOOK = "BERTFIT_TEST_CRASH_AT"  # tests: a step name here kills the process at that step (as kill -9 would)


def publish(work: Path, output_dir: Path) -> None:
    """Swap the staged work/model in at `output_dir` (replacing what is there), then empty the work folder."""
    crash_point("staged")
    staged = work / STAGED
    _write_journal(work / JOURNAL_FILE, {"new": _identity(staged), "output": str(output_dir)})
    crash_point("journal")
    _swap_in(staged, output_dir, work / OLD)
    _finish(work)


def recover(work: Path, output_dir: Path) -> None:
    """Finish what an interrupted run left in its work folder before this run uses it (the caller holds its lock).

    With a journal the staged model was complete: it is put in place, if it is not there yet. Without one, a staged
    folder is a partial copy and is removed. Old folders of earlier bertfit versions (.NAME.old-PID) are restored
    when the output is missing, else removed.
    """
    journal = _read_journal(work / JOURNAL_FILE)
    if journal is not None:
        _finish_publish(work, output_dir, tuple(journal["new"]))
    elif (work / STAGED).exists():
        logger.info("%s: removing a model folder that an interrupted run had not finished writing", work / STAGED)
        shutil.rmtree(work / STAGED)
    _legacy_old_folders(output_dir)


def crash_point(step: str) -> None:
    """Tests: stop the process at this step with SIGKILL when $BERTFIT_TEST_CRASH_AT names it."""
    if os.environ.get(CRASH_HOOK) == step:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def _swap_in(staged: Path, output_dir: Path, old: Path) -> None:
    if not os.path.lexists(output_dir):
        os.rename(staged, output_dir)
    elif not exchange(staged, output_dir):
        os.rename(output_dir, old)
        crash_point("moved-old")
        try:
            os.rename(staged, output_dir)
        except BaseException:
            os.rename(old, output_dir)
            raise
    crash_point("swapped")


def _finish_publish(work: Path, output_dir: Path, new: tuple[int, int]) -> None:
    """An interrupted publish: swap the new model in where that had not happened, then empty the work folder."""
    staged, old = work / STAGED, work / OLD
    if _identity(output_dir) == new:
        logger.info("%s: the interrupted run had put its model in place; removing what it left", output_dir)
    elif _identity(staged) == new:
        logger.info("%s: putting in place the model that an interrupted run had finished", output_dir)
        _swap_in(staged, output_dir, old)  # a missing output (killed between two renames) is a plain rename
    elif not os.path.lexists(output_dir) and _is_model(old):  # the new model is gone: keep the old one
        logger.warning("%s: the interrupted run's model is missing; putting the previous model back", output_dir)
        os.rename(old, output_dir)
    _finish(work)


def _finish(work: Path) -> None:
    """Remove the old model and then everything else the run kept (the run record first, the journal last)."""
    (work / RUN_FILE).unlink(missing_ok=True)  # nothing is resumed from here any more
    for path in (work / STAGED, work / OLD):
        if path.is_symlink():  # the output was a link to a model folder: the link was swapped
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
    crash_point("old-removed")
    clear_work(work)


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not glibc 2.28+ (musl, old systems)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):  # the file system cannot exchange
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _is_model(path: Path) -> bool:
    """A bertfit model folder (as modeling.is_bertfit_model says, without importing torch for it)."""
    return (path / "bertfit.json").is_file() and (path / "config.json").is_file()


def _write_journal(path: Path, entry: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(entry, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_journal(path: Path) -> dict | None:
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        return entry if isinstance(entry.get("new"), list) else None
    except (OSError, ValueError, AttributeError):
        return None


def _legacy_old_folders(output_dir: Path) -> None:
    """Earlier bertfit versions moved the old model to .NAME.old-PID before moving the new one in, and a kill between
    the two left it there: put it back when the output is missing, else remove it (the output is the newer one)."""
    for old in sorted(output_dir.parent.glob(f".{output_dir.name}.old-*")):
        if not old.is_dir() or not _is_model(old):
            continue
        if not os.path.lexists(output_dir):
            logger.warning("%s: restoring the model that an interrupted run had moved to %s", output_dir, old)
            os.rename(old, output_dir)
        else:
            logger.info("%s: removing %s, the previous model an interrupted run left", output_dir, old)
            shutil.rmtree(old)
