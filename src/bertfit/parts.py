"""Resumable output: predictions are committed in numbered Parquet parts with a small manifest, then assembled.

The parts live in a hidden folder beside the output (`.NAME.bertfit-parts/`). A part file appears only once complete
(written under a temporary name, then renamed) and the manifest is rewritten after it, so after a crash or kill -9
the manifest names only parts that are whole. Running the same command again (same input files, same settings)
continues after the last committed part; anything else starts over. The final output appears under its own name
only once every part is in it.
"""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import lzma
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DataError
from .io import atomic_path, check_folder_writable, table_format, write_json, write_table

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
_TEXT_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def input_fingerprint(files: list[Path]) -> list[dict[str, Any]]:
    """What identifies an input for resuming: each file's path, size and modification time."""
    return [{"path": str(f.resolve()), "size": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns} for f in files]


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
    """

    def __init__(self, output: Path, key: dict[str, Any]) -> None:
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
        with atomic_path(self.work / name) as tmp:
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
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
            elif fmt in ("csv", "tsv", "jsonl") and self._text_opener() is not None:
                self._finish_text(fmt)
            else:
                # HDF5, Excel, zip and zstd outputs cannot be appended to; they are written whole.
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

    def _tables(self) -> Iterator[pa.Table]:
        for part in self.parts:
            yield pq.read_table(self.work / part["file"])

    def _frames(self) -> Iterator[pd.DataFrame]:
        for table in self._tables():
            yield table.to_pandas()

    def _schema(self) -> pa.Schema:
        """One schema for all parts: ints widen to floats where a window had gaps; other clashes become text."""
        schemas = [pq.read_schema(self.work / p["file"]).remove_metadata() for p in self.parts]
        try:
            return pa.unify_schemas(schemas, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            fields = []
            for field in schemas[0]:
                types = {s.field(field.name).type for s in schemas}
                fields.append(field if len(types) == 1 else pa.field(field.name, pa.string()))
            return pa.schema(fields)

    def _finish_parquet(self) -> None:
        schema = self._schema()
        with atomic_path(self.output) as tmp:
            with pq.ParquetWriter(tmp, schema) as writer:
                for table in self._tables():
                    writer.write_table(table.cast(schema))

    def _text_opener(self) -> Any:
        suffix = self.output.suffix.lower()
        if suffix in _TEXT_OPENERS:
            return _TEXT_OPENERS[suffix]
        return None if suffix in (".zip", ".zst") else open

    def _finish_text(self, fmt: str) -> None:
        opener = self._text_opener()
        with atomic_path(self.output) as tmp, opener(tmp, "wt", encoding="utf-8", newline="") as fh:
            for i, frame in enumerate(self._frames()):
                _append_text(frame, fh, fmt, header=i == 0)

    def _finish_folder(self) -> None:
        staging = self.output.parent / f".{self.output.name}.bertfit-staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for part in self.parts:
            os.replace(self.work / part["file"], staging / part["file"])
        if self.output.exists():
            self.output.rmdir()  # checked empty before the run began
        os.replace(staging, self.output)


def _append_text(frame: pd.DataFrame, fh: IO[str], fmt: str, header: bool) -> None:
    if fmt == "jsonl":
        frame.to_json(fh, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_csv(fh, sep="," if fmt == "csv" else "\t", index=False, header=header, lineterminator="\n")
