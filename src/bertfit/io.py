"""Read and write tables (CSV, TSV, JSON Lines, Parquet, HDF5, Excel), chosen by file extension."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import unreadable
from .errors import DataError, MissingDependency

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
_LEADING_ZERO = r"\s*[+-]?0\d"  # "01", "-007": codes and ids, which must stay text
_BOOLS = {"True": True, "TRUE": True, "true": True, "False": False, "FALSE": False, "false": False}


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


def read_table(path: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a whole table; `columns` (if given) must all exist, and only those are returned."""
    path = Path(path)
    fmt = table_format(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a data file; point at a file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty; expected a table with a header row")
    check_text_file(path, fmt)
    df = _read(path, fmt)
    if columns is not None:
        require_columns(df, columns, path)
        df = df[list(dict.fromkeys(columns))]
    return df


def data_files(path: str | Path) -> list[Path]:
    """The files behind an input: the file itself, or every data file in a folder of shards, in name order."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_dir():
        table_format(path)
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_")) and _known(p))
    if not files:
        raise DataError(f"{path}: folder holds no data files ({', '.join(sorted(FORMATS))}); point at a file")
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


def iter_frames(path: Path, rows: int, text_cols: Sequence[str] = ()) -> Iterator[pd.DataFrame]:
    """Read one file in windows of exactly `rows` rows (the last may be shorter), without loading it whole.

    Parquet streams through pyarrow. CSV/TSV and JSON Lines are read in chunks by pandas, with the same parsing
    as `read_table` (pyarrow's streaming CSV reader fixes column types from the first block and fails when a later
    block differs). `text_cols` are read as text; in other CSV columns "01" stays text too (see `typed_columns`).
    HDF5 is read by row ranges. Excel, zip and xz files are read whole: their readers cannot stream.
    """
    fmt = table_format(path)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty; expected a table with a header row")
    check_text_file(path, fmt)
    empty = True
    for frame in _frames(path, fmt, rows, text_cols):
        empty = False
        yield frame
    if empty:  # a header with no rows: one empty window, so that the output still gets the columns
        yield _read(path, fmt).head(0)


def _frames(path: Path, fmt: str, rows: int, text_cols: Sequence[str]) -> Iterator[pd.DataFrame]:
    whole = path.suffix.lower() in (".zip", ".xz") or fmt == "excel"
    with read_errors(path, fmt):
        if fmt == "parquet":
            parquet = pq.ParquetFile(path, buffer_size=1 << 20)  # column chunks decoded page by page
            yield from _rebatch(parquet.iter_batches(batch_size=min(rows, 65536)), parquet.schema_arrow, rows)
        elif fmt in ("csv", "tsv") and not whole:
            with pd.read_csv(path, **_csv_options(path, fmt), chunksize=rows) as chunks:
                yield from (typed_columns(chunk, text_cols).reset_index(drop=True) for chunk in chunks)
        elif fmt == "jsonl" and not whole:
            with pd.read_json(path, lines=True, dtype=False, encoding="utf-8", chunksize=rows) as chunks:
                yield from (chunk.reset_index(drop=True) for chunk in chunks)
        elif fmt == "hdf5":
            yield from _hdf_frames(path, rows)
        else:
            df = _read(path, fmt)
            for start in range(0, len(df), rows):
                yield df.iloc[start : start + rows].reset_index(drop=True)


def _known(path: Path) -> bool:
    try:
        table_format(path)
    except DataError:
        return False
    return True


def _rebatch(batches: Iterator[pa.RecordBatch], schema: pa.Schema, rows: int) -> Iterator[pd.DataFrame]:
    """Regroup record batches of any size into frames of exactly `rows` rows."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        while count >= rows:
            table = pa.Table.from_batches(pending, schema=schema)
            yield table.slice(0, rows).to_pandas()
            rest = table.slice(rows)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending, schema=schema).to_pandas()


def _hdf_frames(path: Path, rows: int) -> Iterator[pd.DataFrame]:
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


def require_columns(df: pd.DataFrame, columns: Sequence[str], source: str | Path, option: str = "") -> None:
    """Raise a DataError naming the first missing column, the columns found and the option to pass."""
    for col in columns:
        if col not in df.columns:
            found = ", ".join(f"'{c}'" for c in df.columns[:20])
            if len(df.columns) == 1 and (wrong := _separator_hint(str(df.columns[0]), str(source))):
                shown = found.replace("\t", "\\t")
                raise DataError(f"{source}: found only one column ({shown}); {wrong}")
            hint = _column_hint(df, col, option)
            raise DataError(f"{source}: no column '{col}' (found: {found}); {hint}")


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


def _read(path: Path, fmt: str) -> pd.DataFrame:
    with read_errors(path, fmt):
        if fmt in ("csv", "tsv"):
            return typed_columns(pd.read_csv(path, **_csv_options(path, fmt)))
        if fmt == "jsonl":
            return pd.read_json(path, lines=True, dtype=False, encoding="utf-8")
        if fmt == "parquet":
            return pd.read_parquet(path)
        if fmt == "hdf5":
            return _read_hdf(path)
        return pd.read_excel(path, engine=_openpyxl(), keep_default_na=False, na_values=[""])


def _csv_options(path: Path, fmt: str) -> dict[str, object]:
    """pandas.read_csv settings; also checks the header, which pandas would silently rename ('text', 'text.1').

    utf-8-sig drops a byte-order mark; the C parser handles CRLF and quoted newlines. Every value is read as text
    and typed afterwards by `typed_columns`, so that "01" does not become the number 1.
    """
    sep = SEPARATORS[fmt]
    header = pd.read_csv(path, sep=sep, encoding="utf-8-sig", header=None, nrows=1, dtype=str, keep_default_na=False)
    _check_header([str(name) for name in header.iloc[0]] if len(header) else [], path)
    return dict(sep=sep, encoding="utf-8-sig", keep_default_na=False, na_values=[""], dtype=str)


def _check_header(names: list[str], path: Path) -> None:
    counts = Counter(name for name in names if name.strip())  # blank names become distinct 'Unnamed: N' columns
    for name, count in counts.items():
        if count > 1:
            where = [str(i + 1) for i, n in enumerate(names) if n == name]
            listed = f"{', '.join(where[:-1])} and {where[-1]}"
            raise DataError(
                f"{path}: column '{name}' appears {count} times in the header (columns {listed}); "
                "rename the duplicates so that each column has its own name"
            )


def typed_columns(df: pd.DataFrame, text_cols: Sequence[str] = ()) -> pd.DataFrame:
    """Columns read as text, typed as pandas would type them (numbers, True/False), except the text columns and
    columns with leading zeros ("01", "007"): codes, ids and labels, where "01" and "1" are different values."""
    if len(df) == 0:
        return df  # a header alone: pandas leaves the columns untyped too
    for col in df.columns:
        if col in text_cols or not pd.api.types.is_string_dtype(df[col]):
            continue
        values = df[col].dropna()
        if values.str.match(_LEADING_ZERO).any():
            continue
        if len(values) and values.isin(_BOOLS).all():
            df[col] = df[col].map(_BOOLS)
            continue
        try:
            df[col] = pd.to_numeric(df[col])
        except (ValueError, TypeError):
            pass
    return df


def check_text_file(path: Path, fmt: str) -> None:
    """Catch a CSV, TSV or JSON Lines file that is not UTF-8 text at all, before a parser calls it a bad line."""
    if fmt in ("csv", "tsv", "jsonl") and path.suffix.lower() not in COMPRESSIONS:
        unreadable.check_text(path, fmt)


@contextmanager
def read_errors(path: Path, fmt: str) -> Iterator[None]:
    """Turn the many ways a reader fails into one DataError naming the file (and the line, where it can be found)."""
    plain = path.suffix.lower() not in COMPRESSIONS  # a file that can be read again line by line, to find the line
    try:
        yield
    except UnicodeDecodeError as err:
        raise DataError(unreadable.not_utf8(path, err)) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file has no header row or data") from None
    except pd.errors.ParserError as err:
        problem = unreadable.csv_problem(path, SEPARATORS[fmt]) if plain and fmt in SEPARATORS else None
        raise DataError(f"{path}: {problem or unreadable.cannot_parse(fmt, first_line(err))}") from None
    except PermissionError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror}); check the file's permissions") from None
    except ValueError as err:  # pyarrow's ArrowInvalid is a ValueError
        if "invalid UTF8" in str(err):
            raise DataError(unreadable.not_utf8(path, None)) from None
        problem = unreadable.jsonl_problem(path) if plain and fmt == "jsonl" else None
        raise DataError(f"{path}: {problem or unreadable.cannot_read(fmt, first_line(err))}") from None
    except (OSError, zipfile.BadZipFile, RuntimeError) as err:
        # PyTables raises HDF5ExtError (a RuntimeError) with a multi-line trace; openpyxl raises BadZipFile.
        detail = "not a valid file of this type" if fmt in ("hdf5", "excel") else first_line(err)
        raise DataError(f"{path}: {unreadable.cannot_read(fmt, detail)}") from None


def _read_hdf(path: Path) -> pd.DataFrame:
    with pd.HDFStore(path, mode="r") as store:
        return store[_hdf_key(store, path)]


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
    compression = "infer" if not suffixes.endswith(COMPRESSIONS) else suffixes.rsplit(".", 1)[-1]
    compression = {"gz": "gzip", "zst": "zstd"}.get(compression, compression)
    if fmt in ("csv", "tsv"):
        df.to_csv(tmp, sep="," if fmt == "csv" else "\t", index=False, compression=compression)
    elif fmt == "jsonl":
        df.to_json(tmp, orient="records", lines=True, force_ascii=False, compression=compression)
    elif fmt == "parquet":
        df.to_parquet(tmp, index=False)
    elif fmt == "hdf5":
        plain = df.astype({c: object for c in df.columns if pd.api.types.is_string_dtype(df[c])})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyTables warns that object columns are pickled
            plain.to_hdf(tmp, key=HDF_KEY, mode="w")
    else:
        df.to_excel(tmp, index=False, engine=_openpyxl())


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
