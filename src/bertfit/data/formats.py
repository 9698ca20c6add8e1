"""Table formats: which one a file name asks for (by extension), and the optional engines some need."""

from __future__ import annotations

from pathlib import Path

from bertfit.errors import DataError, MissingDependency

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


def is_table(path: Path) -> bool:
    """Whether the path's extension names a table format."""
    try:
        table_format(path)
    except DataError:
        return False
    return True


def openpyxl_engine() -> str:
    """pandas' Excel engine name, once openpyxl (an optional dependency) is known to be installed."""
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        raise MissingDependency("openpyxl", "excel", "Reading or writing .xlsx files") from None
    return "openpyxl"


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (libraries often append tracebacks or advice)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
