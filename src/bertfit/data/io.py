"""Read and write tables (CSV, TSV, JSON Lines, Parquet, HDF5, Excel), chosen by file extension."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import logging
import lzma
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bertfit.data import unreadable
from bertfit.data.jsonlines import RAW_JSON, json_display, jsonl_frames
from bertfit.data.textfiles import ReadOptions, delimited_frames, header_frame, is_utf8, rebatch
from bertfit.data.textfiles import check_header as check_header
from bertfit.data.textfiles import open_text as open_text
from bertfit.data.textfiles import parse_columns as parse_columns
from bertfit.data.textwriter import TextWriter
from bertfit.data.textwriter import cell_text as cell_text
from bertfit.errors import BertfitError, DataError, MissingDependency

logger = logging.getLogger(__name__)

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".xlsx": "excel",
}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".zip")
HDF_KEY = "data"
SEPARATORS = {"csv": ",", "tsv": "\t"}
PLAIN = ReadOptions()


def table_format(path: str | Path) -> str:
    """The table format named by a path's extension (compression suffixes such as .gz are looked through)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        found = suffixes[-1] if suffixes else "no extension"
        raise DataError(f"{path}: unknown file type ({found}); use one of {', '.join(sorted(FORMATS))}")
    return fmt


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
    known = {p: _known(p) for p in entries}
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


def _known(path: Path) -> bool:
    try:
        table_format(path)
    except DataError:
        return False
    return True


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
    with pd.ExcelFile(path, engine=_openpyxl()) as book:
        if len(book.sheet_names) > 1:
            others = ", ".join(f"'{s}'" for s in book.sheet_names[1:])
            logger.warning("%s: read the first sheet '%s' only; not read: %s (save each as its own file)", path,
                           book.sheet_names[0], others)  # fmt: skip
        df = book.parse(0, dtype=object, keep_default_na=False, na_values=[""])
    return df.astype(object).where(df.notna(), None)


def require_columns(df: pd.DataFrame, columns: Sequence[str], source: str | Path, option: str = "") -> None:
    """Raise a DataError naming the first missing column, the columns found and the option to pass."""
    for col in columns:
        if col not in df.columns:
            found = ", ".join(f"'{c}'" for c in df.columns[:20])
            if len(df.columns) == 1 and (wrong := _separator_hint(str(df.columns[0]), str(source))):
                shown = found.replace("\t", "\\t")
                raise DataError(f"{source}: found only one column ({shown}); {wrong}")
            if headerless := _data_as_header(df, str(source)):
                raise DataError(f"{source}: no column '{col}' (found: {found}); {headerless}")
            hint = _column_hint(df, col, option)
            raise DataError(f"{source}: no column '{col}' (found: {found}); {hint}")


def _data_as_header(df: pd.DataFrame, source: str) -> str | None:
    """The fix for a CSV/TSV whose first row is data, not names: a name that is a number, or a sentence."""
    if not source.lower().split(".gz")[0].endswith((".csv", ".tsv", ".tab")):
        return None
    names = [str(c) for c in df.columns]

    def data_like(name: str) -> bool:
        number = name.strip().lstrip("+-").replace(".", "", 1).isdigit()
        return number or len(name.split()) >= 4 or len(name) > 40

    if not any(data_like(n) for n in names):
        return None
    return (
        "the first row looks like data, not column names: if the file has no header row, name its columns in "
        f"order with --columns (e.g. --columns {','.join(_guess_names(df))})"
    )


def _guess_names(df: pd.DataFrame) -> list[str]:
    """'label' for the column of fewest distinct values, 'text' for the longest texts, col<N> for the others."""
    sample = df.head(1000).astype(str)
    if len(sample.columns) == 0:
        return []
    lengths = {c: sample[c].str.len().mean() if len(sample) else len(str(c)) for c in sample.columns}
    text = max(lengths, key=lengths.get)
    others = [c for c in sample.columns if c != text]
    label = min(others, key=lambda c: sample[c].nunique()) if others else None
    return ["text" if c == text else "label" if c == label else f"col{i + 1}" for i, c in enumerate(sample.columns)]


def _separator_hint(header: str, source: str) -> str | None:
    """What to do when a one-column header holds another separator: the file is not separated as its name says."""
    if "\t" in header:
        return "the file looks tab-separated: give it the .tsv extension"
    if "," in header and not source.lower().endswith(".csv"):
        return "the file looks comma-separated: give it the .csv extension"
    for sep in (";", "|"):
        if sep in header:
            return f"the file looks '{sep}'-separated: save it with commas between columns (or tabs, as .tsv)"
    return None


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
        df.to_excel(tmp, index=False, engine=_openpyxl())


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


def _openpyxl() -> str:
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        raise MissingDependency("openpyxl", "excel", "Reading or writing .xlsx files") from None
    return "openpyxl"


def _column_hint(df: pd.DataFrame, missing: str, option: str) -> str:
    """Suggest the likeliest column: the longest texts for --text-col, the fewest distinct values for --label-col."""
    if not option or df.empty or len(df.columns) == 0:
        return "rename the column or choose another one"
    sample = df.head(1000)
    if option == "--text-col":
        text_like = [c for c in sample.columns if pd.api.types.is_string_dtype(sample[c]) or sample[c].dtype == object]
        if not text_like:
            return f"pass {option} with a column that holds text"
        best = max(text_like, key=lambda c: sample[c].astype(str).str.len().mean())
    else:
        best = min(sample.columns, key=lambda c: sample[c].nunique())
    return f"pass {option} {best}"


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (libraries often append tracebacks or advice)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
