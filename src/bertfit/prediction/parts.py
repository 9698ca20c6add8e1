"""Resumable output: predictions are committed in numbered Parquet parts with a small manifest, then assembled.

The parts live in a hidden folder beside the output (`.NAME.bertfit-parts/`). A part file appears only once complete
(written under a temporary name, then renamed) and the manifest is rewritten after it, so after a crash or kill -9
the manifest names only parts that are whole. Running the same command again (same input files, same settings)
continues after the last committed part; anything else starts over. The final output appears under its own name
only once every part is in it.

One run at a time writes an output: `OutputLock` holds an OS file lock (flock) on `.NAME.bertfit-lock` beside it
from before any work folder is read or removed until the output is in place; a second run refuses at once.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bertfit.data.io import arrow_to_pandas, table_format
from bertfit.data.jsonlines import RAW_JSON
from bertfit.data.textwriter import TextWriter
from bertfit.data.write import (
    atomic_path,
    check_folder_writable,
    display_raw_json,
    open_for_writing,
    pa_table,
    write_json,
    write_table,
)
from bertfit.errors import DataError

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
LOCK_WAIT_S = 1.0  # a lock freed as it is tried (the holder ends and removes the file) is retried for this long
_HELD: dict[str, int] = {}  # lock files this process holds -> the thread that holds each


def lock_file(output: Path) -> Path:
    """The lock file beside `output` (kept while a run holds it; a killed run's file is stale and blocks nothing)."""
    return output.parent / f".{output.name}.bertfit-lock"


class OutputLock:
    """Only one run writes `output` at a time: a second one refuses with a DataError naming the first (pid, host).

    The lock is the kernel's (flock, through `filelock`), so it ends with the process that holds it, however that
    process ends (kill -9 included): a killed run's lock file is left behind but blocks nothing, and a rerun
    resumes. The file holds the holder's pid, host and start time, for the message. It is removed when the lock is
    released, while still held, so a run that comes later creates a new one. Over a shared filesystem the lock works
    between machines where the filesystem supports flock (NFSv4 does); where it does not, the run goes on unlocked
    with a warning.
    """

    def __init__(self, output: Path, command: str = "bertfit predict") -> None:
        self.output, self.command = Path(output), command
        self.path = lock_file(self.output)
        self._lock: Any = None
        self._key: str | None = None
        self._inode: tuple[int, int] | None = None

    def __enter__(self) -> OutputLock:
        from filelock import FileLock, Timeout

        key = str(self.path.absolute())
        if _HELD.get(key) == threading.get_ident():
            return self  # nested in the same run (the CLI, then predict_file, then Classifier.predict_file)
        check_folder_writable(self.output)  # a missing or read-only folder is one line, not a failed lock
        lock = FileLock(self.path, timeout=LOCK_WAIT_S, preserve_lock_file=True, on_acquired=self._stamp)
        try:
            lock.acquire()
        except Timeout:
            raise DataError(
                f"{self.output}: another run is writing it ({self._holder()}); wait for it to finish or stop it, "
                "or write to another output"
            ) from None
        except OSError as error:
            if error.errno not in (errno.ENOSYS, errno.ENOTSUP, errno.ENOLCK):
                raise
            logger.warning("%s: this filesystem cannot lock files; two runs into this output would mix", self.output)
        else:
            self._lock = lock
        self._key = key
        _HELD[key] = threading.get_ident()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._key is None:
            return  # the nested one
        _HELD.pop(self._key, None)
        if self._lock is None:
            return
        try:  # removed while held: a run waiting on this inode sees it unlinked and retries on a new file
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        except OSError:
            pass
        self._lock.release()
        self._lock = None

    def _stamp(self, fd: int) -> None:
        """Write who holds the lock into the lock file (called by filelock with the lock held)."""
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": started, "command": self.command}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        st = os.fstat(fd)
        self._inode = (st.st_dev, st.st_ino)

    def _holder(self) -> str:
        try:
            holder = json.loads(self.path.read_text(encoding="utf-8"))
            return f"{holder['command']}, pid {holder['pid']} on {holder['host']}, since {holder['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            return f"it holds {self.path}"


def is_folder_output(path: Path) -> bool:
    """A path with no extension (or an existing folder) names a folder of Parquet shards."""
    return path.is_dir() or not path.suffix


def check_output(path: Path) -> None:
    """Fail before any work when the output cannot be written as asked."""
    check_folder_writable(path)
    if is_folder_output(path):
        if path.exists() and any(path.iterdir()):
            raise DataError(f"{path}: folder exists and is not empty; remove it or name a new folder")
    else:
        table_format(path)


class PartWriter:
    """Commits windows of predictions as parts; `finish()` assembles them into the output.

    Args:
        output: the final file, or a folder (no extension) to receive the parts as Parquet shards.
        key: what must match for a rerun to resume: input fingerprint and every setting that changes the output.

    The caller holds `OutputLock(output)`: the writer reads, resumes and removes the work folder that it guards.
    """

    def __init__(self, output: Path, key: dict[str, Any]) -> None:
        if str(lock_file(output).absolute()) not in _HELD:
            raise RuntimeError(f"PartWriter({output}) needs OutputLock({output}) held")  # a bug, not a user error
        self.output = output
        self.key = json.loads(json.dumps(key))  # as it will read back from JSON
        self.work = output.parent / f".{output.name}.bertfit-parts"
        self.parts: list[dict[str, Any]] = self._resumable_parts()

    @property
    def rows_done(self) -> int:
        return sum(p["rows"] for p in self.parts)

    def totals(self) -> dict[str, int]:
        """Rows, empty texts and truncated texts over every committed part."""
        return {k: sum(p[k] for p in self.parts) for k in ("rows", "empty_text", "truncated")}

    def commit(self, frame: pd.DataFrame, source: int, empty_text: int, truncated: int) -> None:
        """Write one window's rows (input columns plus predictions) as the next part."""
        self.work.mkdir(exist_ok=True)
        name = f"part-{len(self.parts):05d}.parquet"
        raw = [c for c in frame.attrs.get(RAW_JSON, ()) if c in frame.columns]
        if raw and not self._jsonl:
            frame, raw = display_raw_json(frame), []  # JSON values as the texts they stand for (CSV, Parquet)
        table = pa_table(frame)
        if raw:  # kept as raw JSON texts for a JSON Lines output; the part says which columns
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), RAW_JSON: json.dumps(raw)})
        with atomic_path(self.work / name) as tmp:
            pq.write_table(table, tmp)
        self.parts.append(
            {"file": name, "source": source, "rows": len(frame), "empty_text": empty_text, "truncated": truncated}
        )
        write_json({"version": MANIFEST_VERSION, "key": self.key, "parts": self.parts}, self.work / MANIFEST)

    def finish(self) -> None:
        """Assemble the parts into the output (renamed into place when complete) and remove the work folder."""
        if is_folder_output(self.output):
            self._finish_folder()
        else:
            fmt = table_format(self.output)
            if fmt == "parquet":
                self._finish_parquet()
            elif fmt in ("csv", "tsv", "jsonl"):
                self._finish_text(fmt)
            else:
                # HDF5 and Excel outputs cannot be appended to; they are written whole.
                logger.info("%s: this format is written in one go; memory use grows with the output", self.output)
                write_table(pd.concat(list(self._frames()), ignore_index=True), self.output)
        self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def _resumable_parts(self) -> list[dict[str, Any]]:
        manifest_path = self.work / MANIFEST
        if not manifest_path.exists():
            self.discard()  # a work folder with no manifest holds nothing committed
            return []
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = {}
        parts = manifest.get("parts", [])
        whole = all((self.work / p["file"]).is_file() for p in parts)
        if manifest.get("version") == MANIFEST_VERSION and manifest.get("key") == self.key and whole and parts:
            logger.warning("%s: resuming after %d committed rows", self.output, sum(p["rows"] for p in parts))
            return parts
        logger.warning("%s: an earlier unfinished run used other input or settings; starting over", self.output)
        self.discard()
        return []

    @property
    def _jsonl(self) -> bool:
        return not is_folder_output(self.output) and table_format(self.output) == "jsonl"

    def _tables(self) -> Iterator[pa.Table]:
        for part in self.parts:
            yield pq.read_table(self.work / part["file"])

    def _frames(self) -> Iterator[pd.DataFrame]:
        for table in self._tables():
            yield arrow_to_pandas(table)

    def _schema(self) -> pa.Schema:
        """One schema for all parts (every column any part has, in order of appearance): an all-null window takes
        the others' type; other clashes (a JSON key holding numbers in one window, text in the next) become text."""
        schemas = [pq.read_schema(self.work / p["file"]).remove_metadata() for p in self.parts]
        try:
            return pa.unify_schemas(schemas, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            names = list(dict.fromkeys(name for s in schemas for name in s.names))
            fields = []
            for name in names:
                types = {s.field(name).type for s in schemas if name in s.names} - {pa.null()}
                fields.append(pa.field(name, types.pop() if len(types) == 1 else pa.string()))
            return pa.schema(fields)

    def _finish_parquet(self) -> None:
        schema = self._schema()
        with atomic_path(self.output) as tmp:
            with pq.ParquetWriter(tmp, schema) as writer:
                for table in self._tables():
                    writer.write_table(_conform(table, schema))

    def _finish_text(self, fmt: str) -> None:
        """CSV/TSV/JSON Lines, streamed part by part: every value as its text (see textwriter.TextWriter)."""
        schema = self._schema()
        raw = set()
        for part in self.parts:
            meta = pq.read_schema(self.work / part["file"]).metadata or {}
            raw.update(json.loads(meta.get(RAW_JSON.encode(), b"[]")))
        with atomic_path(self.output) as tmp, open_for_writing(tmp, "".join(self.output.suffixes)) as fh:
            writer = TextWriter(fh, fmt, schema.names, sorted(raw))
            writer.header()
            for table in self._tables():
                table = _conform(table, schema)
                writer.write([table.column(name).to_pylist() for name in schema.names])

    def _finish_folder(self) -> None:
        staging = self.output.parent / f".{self.output.name}.bertfit-staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for part in self.parts:
            os.replace(self.work / part["file"], staging / part["file"])
        if self.output.exists():
            self.output.rmdir()  # checked empty before the run began
        os.replace(staging, self.output)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A part in the output's schema: columns it lacks (a JSON key no row of that window had) are nulls."""
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)
