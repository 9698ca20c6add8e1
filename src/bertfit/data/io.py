"""Read tables (CSV, TSV, JSON Lines, Parquet, HDF5, Excel), chosen by file extension, in windows of rows.

Writing lives in `data.write`, format names in `data.formats`, column checks in `data.columns`; the names other
stages import from here are re-exported below, so `bertfit.data.io` stays the one place to read and write tables.
"""

from __future__ import annotations

import logging
import lzma
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bertfit.data import unreadable
from bertfit.data.columns import require_columns
from bertfit.data.formats import COMPRESSIONS, FORMATS, HDF_KEY, first_line, is_table, openpyxl_engine, table_format
from bertfit.data.jsonlines import jsonl_frames
from bertfit.data.textfiles import ReadOptions, delimited_frames, header_frame, is_utf8, rebatch
from bertfit.errors import BertfitError, DataError

logger = logging.getLogger(__name__)

PLAIN = ReadOptions()
WINDOW_ROWS = 50_000  # rows read, checked or tokenized at a time: big enough for fast batches, small in memory


def read_table(path: str | Path, columns: Sequence[str] | None = None, opts: ReadOptions = PLAIN) -> pd.DataFrame:
    """Read a whole table; `columns` (if given) must all exist, and only those are returned.

    CSV/TSV values are the texts in the file ("" when empty), never typed; JSON Lines values are decoded JSON."""
    path = Path(path)
    table_format(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a data file; point at a file")
    frames = list(iter_frames(path, 1 << 62, (), opts))
    df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    if columns is not None:
        require_columns(df, columns, path)
        df = df[list(dict.fromkeys(columns))]
    return df


def data_files(path: str | Path) -> list[Path]:
    """The files behind an input: the file itself, or every data file in a folder of shards, in name order.

    Files in a folder that are not data files (other extensions) are named in a warning, never skipped silently;
    hidden files and names starting with '_' (e.g. _SUCCESS) are left out as the tools that write shards mean."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_dir():
        table_format(path)
        return [path]
    entries = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
    known = {p: is_table(p) for p in entries}
    files = [p for p in entries if known[p]]
    skipped = [p.name for p in entries if not known[p]]
    if not files:
        raise DataError(f"{path}: folder holds no data files ({', '.join(sorted(FORMATS))}); point at a file")
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        logger.warning("%s: skipped %d files that are not data files by their extension: %s", path, len(skipped),
                       shown)  # fmt: skip
    return files


def count_rows(files: Sequence[Path]) -> int | None:
    """Total rows when the formats record it cheaply (Parquet metadata); None otherwise."""
    if not all(table_format(f) == "parquet" for f in files):
        return None
    try:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    except (OSError, ValueError):
        return None  # the reader will report the broken file with a proper message


def estimate_rows(files: Sequence[Path]) -> int | None:
    """Rows for a progress bar's ETA: exact for Parquet, line counts for plain CSV/TSV/JSON Lines (a quoted
    newline makes it a slight overestimate), None when a file is compressed or in another format."""
    total = 0
    for f in files:
        fmt = table_format(f)
        if fmt == "parquet":
            exact = count_rows([f])
            if exact is None:
                return None
            total += exact
        elif fmt in ("csv", "tsv", "jsonl") and Path(f).suffix.lower() not in COMPRESSIONS:
            total += _count_lines(Path(f)) - (fmt != "jsonl")
        else:
            return None
    return total


def _count_lines(path: Path) -> int:
    lines, last = 0, b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")  # a last line without a newline still counts


def iter_frames(
    path: Path, rows: int, text_cols: Sequence[str] = (), opts: ReadOptions = PLAIN, passthrough: bool = False
) -> Iterator[pd.DataFrame]:
    """Read one file in windows of exactly `rows` rows (the last may be shorter), without loading it whole.

    CSV/TSV: every value is the text in the file, "" when empty (see textfiles). JSON Lines: values decoded; with
    `passthrough`, columns other than `text_cols` keep their raw JSON text (attrs[RAW_JSON]) so that they can be
    written back exactly. Parquet streams through pyarrow (with `passthrough`, integer and boolean columns stay
    exact through gaps: pandas' nullable types). HDF5 is read by row ranges; Excel is read whole, cell by cell.
    """
    path = Path(path)
    fmt = table_format(path)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty; expected a table with a header row")
    check_text_file(path, fmt, opts)
    empty = True
    with read_errors(path, fmt, opts):
        for frame in _frames(path, fmt, rows, text_cols, opts, passthrough):
            empty = False
            yield frame
        if empty:  # a header with no rows: one empty window, so that the output still gets the columns
            yield _empty(path, fmt, opts)


def windows(
    source: Sequence[Path] | pd.DataFrame,
    text_cols: Sequence[str] = (),
    opts: ReadOptions = PLAIN,
    name: str = "the DataFrame",
    desc: str = "reading",
    progress: bool = False,
) -> Iterator[tuple[pd.DataFrame, str]]:
    """Windows of WINDOW_ROWS rows of a DataFrame (named `name`; an empty one gives one empty window) or of each
    file in turn (named by its path), with a progress bar over the rows when `progress`."""
    from tqdm.auto import tqdm

    rows = WINDOW_ROWS
    total = len(source) if isinstance(source, pd.DataFrame) else estimate_rows(source)
    with tqdm(total=total, desc=desc, unit=" rows", disable=not progress) as bar:
        if isinstance(source, pd.DataFrame):
            for start in range(0, max(len(source), 1), rows):
                yield source.iloc[start : start + rows].reset_index(drop=True), name
                bar.update(min(rows, len(source) - start))
            return
        for path in source:
            for frame in iter_frames(path, rows, text_cols, opts):
                yield frame, str(path)
                bar.update(len(frame))


def _frames(
    path: Path, fmt: str, rows: int, text_cols: Sequence[str], opts: ReadOptions, passthrough: bool
) -> Iterator[pd.DataFrame]:
    if fmt == "parquet":
        parquet = pq.ParquetFile(path, buffer_size=1 << 20)  # column chunks decoded page by page
        batches = parquet.iter_batches(batch_size=min(rows, 65536))
        yield from _rebatch(batches, rows, passthrough)
    elif fmt in ("csv", "tsv"):
        yield from delimited_frames(path, fmt, rows, opts)
    elif fmt == "jsonl":
        yield from jsonl_frames(path, rows, opts, list(text_cols) if passthrough else None)
    elif fmt == "hdf5":
        yield from _hdf_frames(path, rows, opts)
    else:
        df = _read_excel(path)
        for start in range(0, max(len(df), 1), rows):
            yield df.iloc[start : start + rows].reset_index(drop=True)


def _empty(path: Path, fmt: str, opts: ReadOptions) -> pd.DataFrame:
    if fmt in ("csv", "tsv"):
        return header_frame(path, fmt, opts)
    if fmt == "parquet":
        return pq.read_schema(path).empty_table().to_pandas()
    return pd.DataFrame()


_NULLABLE = {
    pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(), pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(), pa.bool_(): pd.BooleanDtype(),
}  # fmt: skip


def arrow_to_pandas(table: pa.Table, exact: bool = True) -> pd.DataFrame:
    """A table as pandas; `exact`: integers and booleans with gaps stay integers (not floats: 19-digit ids)."""
    return table.to_pandas(types_mapper=_NULLABLE.get if exact else None)


def _rebatch(batches: Iterator[pa.RecordBatch], rows: int, exact: bool) -> Iterator[pd.DataFrame]:
    """Record batches of any size as frames of exactly `rows` rows."""
    for table in rebatch(batches, rows):
        yield arrow_to_pandas(table, exact)


def _hdf_frames(path: Path, rows: int, opts: ReadOptions) -> Iterator[pd.DataFrame]:
    from bertfit.data.hdf import check_no_pickles

    check_no_pickles(path, opts.allow_pickle)
    with pd.HDFStore(path, mode="r") as store:
        key = _hdf_key(store, path)
        start = 0
        while True:
            chunk = store.select(key, start=start, stop=start + rows)
            if len(chunk):
                yield chunk.reset_index(drop=True)
            if len(chunk) < rows:
                return
            start += rows


def _read_excel(path: Path) -> pd.DataFrame:
    """The first sheet, each cell as Excel holds it (a whole number stays whole); other sheets are named."""
    with pd.ExcelFile(path, engine=openpyxl_engine()) as book:
        if len(book.sheet_names) > 1:
            others = ", ".join(f"'{s}'" for s in book.sheet_names[1:])
            logger.warning("%s: read the first sheet '%s' only; not read: %s (save each as its own file)", path,
                           book.sheet_names[0], others)  # fmt: skip
        df = book.parse(0, dtype=object, keep_default_na=False, na_values=[""])
    return df.astype(object).where(df.notna(), None)


def check_text_file(path: Path, fmt: str, opts: ReadOptions = PLAIN) -> None:
    """Catch a CSV, TSV or JSON Lines file that is not UTF-8 text at all, before a parser calls it a bad line."""
    if fmt in ("csv", "tsv", "jsonl") and is_utf8(opts.encoding) and path.suffix.lower() not in COMPRESSIONS:
        unreadable.check_text(path, fmt)


@contextmanager
def read_errors(path: Path, fmt: str, opts: ReadOptions = PLAIN) -> Iterator[None]:
    """Turn the many ways a reader fails into one DataError naming the file (and the line, where it can be found)."""
    plain = path.suffix.lower() not in COMPRESSIONS  # a file that can be read again line by line, to find the line
    try:
        yield
    except BertfitError:
        raise
    except UnicodeDecodeError as err:
        raise DataError(unreadable.not_decodable(path, err, opts.encoding, plain)) from None
    except PermissionError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror}); check the file's permissions") from None
    except ValueError as err:  # pyarrow's ArrowInvalid is a ValueError
        if "invalid UTF8" in str(err):
            raise DataError(unreadable.not_decodable(path, None, "utf-8", plain)) from None
        raise DataError(f"{path}: {unreadable.cannot_read(fmt, first_line(err))}") from None
    except (OSError, EOFError, zipfile.BadZipFile, RuntimeError, lzma.LZMAError) as err:
        # PyTables raises HDF5ExtError (a RuntimeError) with a multi-line trace; openpyxl raises BadZipFile.
        detail = "not a valid file of this type" if fmt in ("hdf5", "excel") else first_line(err)
        raise DataError(f"{path}: {unreadable.cannot_read(fmt, detail)}") from None


def _hdf_key(store: pd.HDFStore, path: Path) -> str:
    keys = store.keys()
    if not keys:
        raise DataError(
            f"{path}: HDF5 file holds no table that pandas wrote; write one with DataFrame.to_hdf(path, key='data')"
        )
    if len(keys) > 1 and f"/{HDF_KEY}" not in keys:
        raise DataError(f"{path}: HDF5 file holds several tables ({', '.join(keys)}); keep one, or name it 'data'")
    return f"/{HDF_KEY}" if f"/{HDF_KEY}" in keys else keys[0]
