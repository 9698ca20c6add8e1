"""Parallel runs never destroy each other's files: a cache is built by one process while the others wait for it and
then reuse it.

Locks are kernel file locks (filelock: flock on Unix), so a killed process holds nothing: its lock goes with it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

logger = logging.getLogger(__name__)


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
