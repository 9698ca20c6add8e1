"""Parallel runs never destroy each other's files: a cache is built by one process while the others wait for it and
then reuse it, and a training work folder (.NAME.bertfit-work/ beside the output) belongs to one run at a time.

Locks are kernel file locks (filelock: flock on Unix), so a killed process holds nothing: its lock goes with it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from filelock import FileLock, Timeout

from bertfit.errors import DataError

logger = logging.getLogger(__name__)

LOCK_FILE = "lock"  # in the work folder: held by the run that uses it
OWNER_FILE = "owner.json"  # who holds it (pid, host, since), for the message a second run shows
RUN_FILE = "run.json"  # what identifies the run; cleared first, so a half-cleared folder is never resumed
JOURNAL_FILE = "publish.json"  # cleared last: while it is there, the next run finishes an interrupted publish


def work_folder(output_dir: Path) -> Path:
    """Where a run into `output_dir` keeps its checkpoints, logs and the staged model: beside the output."""
    return output_dir.parent / f".{output_dir.name}.bertfit-work"


@contextmanager
def building(target: Path, what: str) -> Iterator[None]:
    """Hold the lock for building the cache entry `target`: a process building it already is waited for (the caller
    then finds it built). The lock file `.NAME.lock` stays beside the entry: removing it could let two builders in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(target.parent / f".{target.name}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info("%s: waiting for another bertfit process that is building %s", what, target)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


class WorkClaim:
    """The lock on a work folder, held for the whole run; `release` removes the folder when nothing is left in it."""

    def __init__(self, work: Path, output_dir: Path) -> None:
        self.work = work
        for attempt in range(3):
            work.mkdir(exist_ok=True)
            self.lock = FileLock(work / LOCK_FILE)
            try:
                self.lock.acquire(timeout=0)
                break
            except FileNotFoundError:  # the run that held it has just finished and removed the folder
                if attempt == 2:
                    raise
            except Timeout:
                raise DataError(
                    f"{output_dir}: another bertfit run is training into this folder ({_owner(work)}); "
                    "wait for it to finish, stop it, or choose another --output"
                ) from None
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now().isoformat("T", "seconds")}
        tmp = work / f".{OWNER_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(owner), encoding="utf-8")
        os.replace(tmp, work / OWNER_FILE)

    def release(self) -> None:
        """Give the folder up; remove it when the run left nothing to resume or to publish in it."""
        (self.work / OWNER_FILE).unlink(missing_ok=True)
        if {p.name for p in self.work.iterdir()} <= {LOCK_FILE}:
            # Unlinked while still held: a process that opened the old file sees it gone once it gets the lock
            # (filelock checks the link count) and starts over on a new one.
            (self.work / LOCK_FILE).unlink(missing_ok=True)
            try:
                self.work.rmdir()
            except OSError:  # another run has just created its lock file here: the folder is its now
                pass
        self.lock.release()


def clear_work(work: Path) -> None:
    """Empty a work folder that this process holds, all but its lock: the run record first, the publish journal last."""
    (work / RUN_FILE).unlink(missing_ok=True)
    for path in sorted(work.iterdir()):
        if path.name in (LOCK_FILE, OWNER_FILE, JOURNAL_FILE):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    (work / JOURNAL_FILE).unlink(missing_ok=True)


def _owner(work: Path) -> str:
    """'pid 1234 on host gpu-3 since 2024-05-01T10:00:00', or what is known of it."""
    try:
        owner = json.loads((work / OWNER_FILE).read_text(encoding="utf-8"))
        return f"pid {owner['pid']} on host {owner['host']} since {owner['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"its lock is {work / LOCK_FILE}"
