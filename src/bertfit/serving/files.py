"""Files uploaded on the page, labelled by `Classifier.predict_file` (the streaming prediction of `bertfit predict`)
in a temporary folder of the server's own, and served back for download.

A request names no path: the upload is streamed into `<temporary folder>/<random id>/input<ext>` (the extension,
from a short list, is the only part of the client's file name that is used), the output is `labelled<ext>` beside
it, and the job is found again by its random id. One file is labelled at a time; a few more may wait.
"""

from __future__ import annotations

import copy
import logging
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bertfit.errors import BertfitError, ConfigError
from bertfit.prediction.classifier import Classifier
from bertfit.serving.service import TooLarge

logger = logging.getLogger(__name__)

SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")
MEDIA_TYPES = {".csv": "text/csv", ".tsv": "text/tab-separated-values", ".jsonl": "application/jsonl",
               ".parquet": "application/vnd.apache.parquet"}  # fmt: skip
WAITING = 4  # files waiting behind the one being labelled; more are refused (503)
KEPT = 16  # finished jobs kept for download; the oldest go first
WINDOW = 5_000  # rows per window: the progress shown moves at least this often


@dataclass
class FileJob:
    id: str
    folder: Path
    input: Path
    output: Path
    name: str  # the labelled file's name for the download
    text_col: str | None = None
    status: str = "queued"
    rows: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        download = f"/files/{self.id}/download" if self.status == "done" else None
        return {"id": self.id, "status": self.status, "rows": self.rows, "name": self.name, "error": self.error,
                "download": download}  # fmt: skip


class FileJobs:
    """The uploads of one server: received, labelled one at a time, kept for download, removed at shutdown."""

    def __init__(self, clf: Classifier, max_bytes: int) -> None:
        self.clf, self.max_bytes = clf, max_bytes
        self.root = Path(tempfile.mkdtemp(prefix="bertfit-serve-"))
        self.jobs: dict[str, FileJob] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bertfit-file")

    def new(self, filename: str, text_col: str | None) -> FileJob:
        """A job for an upload named `filename` (only its extension is used); refused past the waiting limit."""
        suffix = Path(filename).suffix.lower()
        if suffix not in SUFFIXES:
            raise ConfigError(f"'{filename}': upload a {', '.join(SUFFIXES)} file")
        with self._lock:
            if sum(j.status in ("queued", "running") for j in self.jobs.values()) > WAITING:
                raise Busy(f"{WAITING + 1} files are being labelled or waiting; try again in a minute")
            job_id = secrets.token_urlsafe(16)
            folder = self.root / job_id
            folder.mkdir()
            stem = re.sub(r"[^\w.-]+", "_", Path(filename).stem)[:80] or "file"
            job = FileJob(job_id, folder, folder / f"input{suffix}", folder / f"labelled{suffix}",
                          f"{stem}.labelled{suffix}", text_col)  # fmt: skip
            self.jobs[job_id] = job
            self._forget_old()
        return job

    async def receive(self, job: FileJob, chunks: AsyncIterator[bytes]) -> None:
        """Stream the upload to the job's input file (413 past max_bytes), then queue it for labelling."""
        size = 0
        try:
            with job.input.open("wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise TooLarge(f"the file is over {self.max_bytes / 1e6:g} MB (--max-upload-mb)")
                    out.write(chunk)
        except BaseException:
            self.remove(job)
            raise
        self._pool.submit(self._label, job)

    def _label(self, job: FileJob) -> None:
        job.status = "running"
        counting = copy.copy(self.clf)  # shares the model; only its predict_stream counts the rows it labels
        stream = self.clf.predict_stream

        def counted(frames: Iterable[pd.DataFrame], *args: Any, **kwargs: Any) -> Iterator[pd.DataFrame]:
            for frame in stream(frames, *args, **kwargs):
                job.rows += len(frame)
                yield frame

        counting.predict_stream = counted  # type: ignore[method-assign]
        try:
            text_cols = [job.text_col] if job.text_col else None
            counting.predict_file(job.input, job.output, text_cols=text_cols, window=WINDOW)
            job.status = "done"
        except BertfitError as error:
            job.status, job.error = "failed", str(error)
        except Exception as error:
            logger.exception("labelling an uploaded file failed")
            job.status, job.error = "failed", f"{type(error).__name__}: {error}"
        finally:
            job.input.unlink(missing_ok=True)

    def get(self, job_id: str) -> FileJob | None:
        return self.jobs.get(job_id)

    def remove(self, job: FileJob) -> None:
        with self._lock:
            self.jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)

    def close(self) -> None:
        """Let the file being labelled finish, drop the waiting ones, and delete every file."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def _forget_old(self) -> None:
        finished = [j for j in self.jobs.values() if j.status in ("done", "failed")]
        for job in finished[: max(0, len(finished) - KEPT)]:
            self.jobs.pop(job.id, None)
            shutil.rmtree(job.folder, ignore_errors=True)


class Busy(Exception):
    """Too many files waiting (503 with Retry-After)."""
