"""Write tables and JSON so that a file appears only once complete, and check output paths before any work."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bertfit.data.formats import HDF_KEY, openpyxl_engine, table_format
from bertfit.data.jsonlines import RAW_JSON, json_display
from bertfit.data.textwriter import TextWriter, cell_text
from bertfit.errors import DataError, MissingDependency


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write a table in the format named by the extension; the file appears only once complete."""
    path = Path(path)
    fmt = table_format(path)
    with atomic_path(path) as tmp:
        _write(df, tmp, fmt, "".join(path.suffixes))


def write_json(data: object, path: str | Path) -> None:
    """Write JSON so that the file appears only once complete."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside `path`; renamed to `path` when the block succeeds, removed when it fails."""
    check_writable(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if tmp.is_file():
            os.chmod(tmp, default_file_mode())  # mkstemp makes files private (0600); outputs get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def check_writable(path: str | Path, suffixes: tuple[str, ...] = ()) -> None:
    """Fail before any work is done when an output path cannot be written as asked."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise DataError(f"{path}: expected a {' or '.join(suffixes)} file name for this output")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; give a file name")
    check_folder_writable(path)


def check_folder_writable(path: str | Path) -> None:
    """Fail when `path` cannot be created because of its folder: missing, a file, or not writable (by trying)."""
    path = Path(path)
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{path}: {folder} is a file, not a folder; choose another output path")
    if not folder.is_dir():
        raise DataError(f"{path}: folder {folder} does not exist; create it first")
    try:  # os.access says yes to root on read-only or virtual file systems; a nameless file leaves nothing behind
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise DataError(f"{path}: folder {folder} is not writable ({reason}); choose another output path") from None


def _write(df: pd.DataFrame, tmp: Path, fmt: str, suffixes: str) -> None:
    if fmt in ("csv", "tsv", "jsonl"):
        with open_for_writing(tmp, suffixes) as fh:
            writer = TextWriter(fh, fmt, [str(c) for c in df.columns], df.attrs.get(RAW_JSON, ()))
            writer.header()
            writer.write([df[c].tolist() for c in df.columns])
        return
    df = display_raw_json(df)
    if fmt == "parquet":
        pq.write_table(pa_table(df), tmp)
    elif fmt == "hdf5":
        from bertfit.data.hdf import write_hdf

        write_hdf(df, tmp, HDF_KEY)
    else:
        df.to_excel(tmp, index=False, engine=openpyxl_engine())


def open_for_writing(path: Path, suffixes: str) -> IO[str]:
    """A text stream to `path`, compressed as the name's last suffix says (.gz, .bz2, .xz, .zst, .zip)."""
    suffix = "." + suffixes.rsplit(".", 1)[-1].lower() if suffixes else ""
    if suffix == ".gz":
        return gzip.open(path, "wt", encoding="utf-8", newline="")
    if suffix == ".bz2":
        return bz2.open(path, "wt", encoding="utf-8", newline="")
    if suffix == ".xz":
        return lzma.open(path, "wt", encoding="utf-8", newline="")
    if suffix == ".zst":
        try:
            import zstandard
        except ImportError:
            raise MissingDependency("zstandard", "zstd", "Writing .zst files") from None
        raw = zstandard.ZstdCompressor().stream_writer(open(path, "wb"), closefd=True)
        return io.TextIOWrapper(raw, encoding="utf-8", newline="")
    if suffix == ".zip":
        archive = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED)
        member = suffixes[: -len(".zip")].lstrip(".")
        return _ZipText(archive, f"data.{member}" if member else "data")
    return open(path, "w", encoding="utf-8", newline="")


class _ZipText(io.TextIOWrapper):
    """A text stream into one member of a zip archive; closing it closes the archive."""

    def __init__(self, archive: zipfile.ZipFile, name: str) -> None:
        self.archive = archive
        super().__init__(archive.open(name, "w"), encoding="utf-8", newline="")

    def close(self) -> None:
        super().close()
        self.archive.close()


def display_raw_json(df: pd.DataFrame) -> pd.DataFrame:
    """Raw JSON columns (JSON Lines pass-through) as the texts they stand for, for formats that are not JSON."""
    raw = [c for c in df.attrs.get(RAW_JSON, ()) if c in df.columns]
    if not raw:
        return df
    df = df.copy()
    for col in raw:
        df[col] = pd.Series([json_display(v) for v in df[col].tolist()], index=df.index, dtype=object)
    df.attrs = {k: v for k, v in df.attrs.items() if k != RAW_JSON}
    return df


def pa_table(df: pd.DataFrame) -> pa.Table:
    """A frame as an Arrow table; a column of mixed Python values (Excel cells, JSON values) becomes text."""
    try:
        return pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        fixed = df.copy()
        for col in fixed.columns:
            try:
                pa.array(fixed[col], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                values = [None if v is None else cell_text(v) for v in fixed[col].tolist()]
                fixed[col] = pd.Series(values, index=fixed.index, dtype=object)
        return pa.Table.from_pandas(fixed, preserve_index=False)
