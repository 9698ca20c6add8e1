"""CSV and TSV read value for value (plus the options and opening shared with JSON Lines, see jsonlines.py).

Nothing here types a value. A CSV/TSV field is the string between its separators (quotes removed when the file
quotes), "" when empty; so a 19-digit id, "1.50", "TRUE" and "007" stay exactly that.

Every record is counted against the physical lines it came from. A quote that swallows lines (an unbalanced quote,
or a tab-separated file whose texts start with a quote) is an error naming the line and the `--quoting` to try,
never a silent merge of rows.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import itertools
import logging
import lzma
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd

from bertfit.errors import ConfigError, DataError, MissingDependency

logger = logging.getLogger(__name__)

QUOTINGS = ("auto", "csv", "none")
SAMPLE_BYTES = 1 << 20  # what `--quoting auto` looks at in a TSV file
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
csv.field_size_limit(2**31 - 1)  # a field is as long as the text it holds (the default cuts at 128 KiB)


@dataclass(frozen=True)
class ReadOptions:
    """How to read a table file: names for a headerless CSV/TSV, quoting, text encoding, pickled HDF5 columns."""

    columns: tuple[str, ...] | None = None  # a CSV/TSV without a header row: its column names, in order
    quoting: str = "auto"  # auto | csv | none (see resolve_quoting)
    encoding: str = "utf-8"  # a byte-order mark is handled for UTF-8
    allow_pickle: bool = False  # HDF5 object columns stored as pickles: unpickling can run code

    def __post_init__(self) -> None:
        if self.quoting not in QUOTINGS:
            raise ConfigError(f"quoting must be one of {', '.join(QUOTINGS)} (got '{self.quoting}')")
        try:
            "".encode(self.encoding)
        except LookupError:
            raise ConfigError(f"unknown text encoding '{self.encoding}'; try utf-8, cp1252 or latin-1") from None
        if self.columns is not None:
            names = [c for c in self.columns]
            if not names or any(not str(c).strip() for c in names) or len(set(names)) != len(names):
                raise ConfigError(f"--columns must name each column once, e.g. 'label,text' (got {','.join(names)})")


def parse_columns(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """'label,text' (or a list) -> ('label', 'text')."""
    if value is None:
        return None
    names = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return tuple(n.strip() for n in names)


def open_text(path: Path, encoding: str = "utf-8") -> IO[str]:
    """A text stream over a (possibly compressed) file, universal newlines off (the csv module wants them raw)."""
    enc = "utf-8-sig" if is_utf8(encoding) else encoding
    suffix = path.suffix.lower()
    if suffix in _OPENERS:
        return _OPENERS[suffix](path, "rt", encoding=enc, newline="")
    if suffix == ".zip":
        archive = zipfile.ZipFile(path)
        members = [m for m in archive.namelist() if not m.endswith("/")]
        if len(members) != 1:
            raise DataError(f"{path}: a .zip input must hold exactly one file (found {len(members)})")
        return io.TextIOWrapper(archive.open(members[0]), encoding=enc, newline="")
    if suffix == ".zst":
        try:
            import zstandard
        except ImportError:
            raise MissingDependency("zstandard", "zstd", "Reading .zst files") from None
        raw = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
        return io.TextIOWrapper(raw, encoding=enc, newline="")
    return open(path, encoding=enc, newline="")


# -- quoting ------------------------------------------------------------------------------------------------------


def resolve_quoting(path: Path, fmt: str, opts: ReadOptions) -> str:
    """'csv' or 'none'. CSV files quote; a TSV is read without quoting (as most tools write it, and as the BERT
    reference scripts read it) unless its first MiB shows quoting that matters: a quoted field holding a doubled
    quote, a tab or a line break, or lines whose every field is quoted. A lone '"Hello"' proves nothing."""
    if opts.quoting != "auto":
        return opts.quoting
    if fmt == "csv":
        return "csv"
    with open_text(path, opts.encoding) as fh:
        sample = fh.read(SAMPLE_BYTES)
    if '"' not in sample:
        return "none"
    if len(sample) == SAMPLE_BYTES:
        sample = sample[: sample.rfind("\n") + 1]
    try:
        quoted = list(csv.reader(io.StringIO(sample, newline=""), delimiter="\t", strict=True))
    except csv.Error:
        return "none"
    plain = [line.split("\t") for line in sample.splitlines() if line]
    quoted = [r for r in quoted if r]
    if len(quoted) != len(plain):
        return "csv"  # quoted fields hold line breaks, and they parse cleanly
    for q, p in zip(quoted, plain):
        if len(q) != len(p):
            return "csv"  # a quoted field holds a tab
        if len(p) > 1 and all(f.startswith('"') and f.endswith('"') and len(f) > 1 for f in p):
            return "csv"  # every field quoted
        for qf, pf in zip(q, p):
            if qf != pf and '""' in pf[1:-1]:
                return "csv"  # a doubled quote inside quotes
    return "none"


# -- reading CSV / TSV --------------------------------------------------------------------------------------------


def delimited_frames(path: Path, fmt: str, rows: int, opts: ReadOptions) -> Iterator[pd.DataFrame]:
    """Windows of `rows` records of a CSV/TSV file, every value the text it was ("" when empty).

    pyarrow's CSV reader (every column read as text) does the parsing while no value holds a line break: then every
    row is one physical line and no quote can have joined lines. From the first window that holds a line break, or
    any parse error, the rest is read by the csv module, which counts lines and names the one where a problem is."""
    done = 0
    if _arrow_can_read(path, opts):
        for frame in _arrow_frames(path, fmt, rows, opts):
            if frame is None:
                break  # a line break in a value, or a parse error: the careful reader takes over from here
            done += len(frame)
            yield frame
        else:
            return
    header: list[str] = []
    batch: list[list[str]] = []
    for record in itertools.islice(delimited_records(path, fmt, opts, header), done, None):
        batch.append(record)
        if len(batch) == rows:
            yield _frame(batch, header)
            batch = []
    if batch:
        yield _frame(batch, header)


_ARROW_CODECS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}
ARROW_BLOCK = 1 << 22  # bytes pyarrow parses at a time


def _arrow_can_read(path: Path, opts: ReadOptions) -> bool:
    suffix = path.suffix.lower()
    return (suffix in _ARROW_CODECS or suffix not in (*_OPENERS, ".zip", ".zst")) and is_utf8(opts.encoding)


def is_utf8(encoding: str) -> bool:
    return encoding.lower().replace("_", "-") in ("utf-8", "utf8")


class _HandOver(Exception):
    """A value holds a line break: the careful reader takes over after the windows already given."""


def _arrow_frames(path: Path, fmt: str, rows: int, opts: ReadOptions) -> Iterator[pd.DataFrame | None]:
    """Windows read by pyarrow; None (then nothing more) where the careful reader must take over."""
    import pyarrow as pa

    header: list[str] = []
    if next(iter(delimited_records(path, fmt, opts, header)), None) is None:  # names, and checks the header
        return
    stream = pa.input_stream(str(path), compression=_ARROW_CODECS.get(path.suffix.lower()))
    try:
        reader = _open_csv(stream, header, opts, fmt, resolve_quoting(path, fmt, opts))
    except (pa.ArrowInvalid, ValueError):  # the first block already fails to parse: the careful reader says where
        stream.close()
        yield None
        return
    with reader:
        try:
            for window in rebatch(_whole_lines(reader), rows):
                yield _arrow_frame(window)
        except (_HandOver, pa.ArrowInvalid, ValueError):
            yield None  # rows held back in an unfinished window are read again by the careful reader


def _whole_lines(reader: Any) -> Iterator[Any]:
    """The reader's batches, until one holds a value with a line break (or fails to parse)."""
    for batch in reader:
        if any(_breaks(batch.column(i)) for i in range(batch.num_columns)):
            raise _HandOver
        yield batch


def rebatch(batches: Iterable[Any], rows: int) -> Iterator[Any]:
    """Regroup Arrow record batches of any size into tables of exactly `rows` rows (the last may be shorter)."""
    import pyarrow as pa

    pending: list[Any] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        while count >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending)


def _open_csv(stream: Any, header: list[str], opts: ReadOptions, fmt: str, quoting: str) -> Any:
    import pyarrow.csv as pa_csv

    return pa_csv.open_csv(stream, **arrow_csv_options(header, opts, fmt, quoting, ARROW_BLOCK))


def arrow_csv_options(header: list[str], opts: ReadOptions, fmt: str, quoting: str, block_size: int | None = None
                      ) -> dict[str, Any]:  # fmt: skip
    """pyarrow CSV options that read every column as text, "" for an empty field, never null (this module's fast
    path and the Ray engine's reader)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    extra = {"block_size": block_size} if block_size else {}
    return {
        "read_options": pa_csv.ReadOptions(
            column_names=header, skip_rows=0 if opts.columns else 1, encoding=opts.encoding, **extra
        ),  # fmt: skip
        "parse_options": pa_csv.ParseOptions(
            delimiter="," if fmt == "csv" else "\t",
            quote_char='"' if quoting == "csv" else False,
            newlines_in_values=quoting == "csv",
        ),
        "convert_options": pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    }


def _breaks(column: Any) -> bool:
    import pyarrow.compute as pc

    return bool(pc.any(pc.match_substring_regex(column, "[\r\n]")).as_py())


def _arrow_frame(table: Any) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(table.column(name).to_numpy(zero_copy_only=False), dtype=object)
                         for name in table.column_names})  # fmt: skip


def delimited_records(path: Path, fmt: str, opts: ReadOptions, header: list[str]) -> Iterator[list[str]]:
    """Every record of a CSV/TSV file, checked against the physical lines (see the module docstring); `header`
    receives the column names (from the file, or `opts.columns`) before the first record."""
    sep = "," if fmt == "csv" else "\t"
    quoting = resolve_quoting(path, fmt, opts)
    one_line = fmt == "tsv" and opts.quoting == "auto" and quoting == "csv"  # auto-detected quoting: no merges
    with open_text(path, opts.encoding) as fh:
        reader = _Records(fh, sep, quoting, path, fmt)
        header[:] = _header(reader, opts, path)
        width = len(header)
        for record, first, last in reader:
            if len(record) != width:
                raise DataError(f"{path}: {_width_problem(record, width, first, last, fmt, quoting, opts)}")
            if one_line and (last > first or any("\t" in f for f in record)):
                what = "a line break" if last > first else "a tab"
                raise DataError(
                    f"{path}: line {first}: a quoted field holds {what} (lines {first}-{last} became one row); "
                    "pass --quoting none to read every line as one row, or --quoting csv if the quotes are meant"
                )
            yield record
        if reader.blank:
            logger.info("%s: skipped %d blank lines", path, reader.blank)


def header_frame(path: Path, fmt: str, opts: ReadOptions) -> pd.DataFrame:
    """The columns of a CSV/TSV with no rows (for an input that holds only a header)."""
    with open_text(path, opts.encoding) as fh:
        header = _header(_Records(fh, "," if fmt == "csv" else "\t", resolve_quoting(path, fmt, opts), path, fmt),
                         opts, path)  # fmt: skip
    return pd.DataFrame({name: pd.Series([], dtype=object) for name in header})


class _Records:
    """csv.reader with each record's first and last physical line; blank lines skipped and counted."""

    def __init__(self, fh: IO[str], sep: str, quoting: str, path: Path, fmt: str) -> None:
        style = csv.QUOTE_NONE if quoting == "none" else csv.QUOTE_MINIMAL
        self.reader = csv.reader(fh, delimiter=sep, quoting=style, strict=True)
        self.path, self.fmt, self.quoting = path, fmt, quoting
        self.blank = 0
        self.header_line = 0

    def __iter__(self) -> Iterator[tuple[list[str], int, int]]:
        start = self.reader.line_num + 1
        while True:
            try:
                record = next(self.reader)
            except StopIteration:
                return
            except csv.Error as err:
                raise DataError(f"{self.path}: {self._quote_problem(start, err)}") from None
            first, start = start, self.reader.line_num + 1
            if not record:
                self.blank += 1
                continue
            yield record, first, self.reader.line_num

    def _quote_problem(self, line: int, err: csv.Error) -> str:
        text = str(err)
        if "NUL" in text:
            return f"line {line} holds a NUL byte; check that this is a text file"
        if "unexpected end of data" in text:
            other = "--quoting none if quotes in this file are plain characters" if self.fmt == "tsv" else (
                "--quoting none if its quotes are plain characters")  # fmt: skip
            return (
                f'line {line}: a quote (") opens a text that never closes; close it, or write a quote inside '
                f'a quoted text as two (""), or pass {other}'
            )
        if "expected after" in text:
            return (
                f"line {line}: a quoted text is followed by more text before the separator ({text}); write a quote "
                'inside a quoted text as two (""), or pass --quoting none if quotes are plain characters'
            )
        return f"line {line}: {text}; check the quotes on that line, or pass --quoting none"


def _header(reader: _Records, opts: ReadOptions, path: Path) -> list[str]:
    if opts.columns is not None:
        return list(opts.columns)
    for record, first, _ in reader:
        reader.header_line = first
        names = [name if name.strip() else f"Unnamed: {i}" for i, name in enumerate(record)]
        check_header(record, path)
        return names
    raise DataError(f"{path}: file has no header row or data")


def check_header(names: list[str], path: Path) -> None:
    """Refuse a header that names a column twice (pandas would silently rename the second 'text.1')."""
    counts: dict[str, int] = {}
    for name in names:
        if name.strip():
            counts[name] = counts.get(name, 0) + 1
    for name, count in counts.items():
        if count > 1:
            where = [str(i + 1) for i, n in enumerate(names) if n == name]
            listed = f"{', '.join(where[:-1])} and {where[-1]}"
            raise DataError(
                f"{path}: column '{name}' appears {count} times in the header (columns {listed}); "
                "rename the duplicates so that each column has its own name"
            )


def _width_problem(record: list[str], width: int, first: int, last: int, fmt: str, quoting: str,
                   opts: ReadOptions) -> str:  # fmt: skip
    where = f"line {first}" if first == last else f"lines {first}-{last}"
    source = "--columns names" if opts.columns is not None else "the header has"
    fields = f"{where} has {len(record)} field{'s' * (len(record) != 1)}, {source} {width}"
    if len(record) > width:
        shown = "a tab" if fmt == "tsv" else "','"
        if fmt == "tsv" and quoting == "none":
            return f"{fields}; texts that hold tabs must be quoted: quote them and pass --quoting csv"
        return f'{fields}; put texts that hold {shown} in double quotes ("like, this")'
    if fmt == "tsv" and quoting == "none":
        return f"{fields}; a text holding a line break splits its row: quote such texts and pass --quoting csv"
    return f"{fields}; every row needs a value (perhaps empty) for each column"


def _frame(batch: list[list[str]], header: list[str]) -> pd.DataFrame:
    columns = list(zip(*batch))
    return pd.DataFrame({name: pd.Series(col, dtype=object) for name, col in zip(header, columns)})
