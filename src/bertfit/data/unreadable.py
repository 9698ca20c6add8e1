"""Why a table file cannot be read, in one line: the file, the line where it breaks, and what to do.

A parser's own error names a record or a byte position, and often the wrong cause (a UTF-16 file "is not UTF-8
on line 1"). When reading fails, these functions look at the file again, cheaply and only then, to say more.
`io.read_errors` decides which apply (text formats only, not compressed files).
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from pathlib import Path

from bertfit.data.textfiles import is_utf8
from bertfit.errors import DataError


def check_text(path: Path, fmt: str) -> None:
    """Fail on a text-format file that is not UTF-8 text at all: UTF-16 or UTF-32, or binary (NUL bytes)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: FF FE starts both
        raise DataError(f"{path}: is UTF-32 text; re-save the file as UTF-8")
    sample = head[:64]  # ASCII as UTF-16 without a byte-order mark: every other byte is NUL
    bom_less = len(sample) >= 4 and (not sample[1::2].strip(b"\0") or not sample[0::2].strip(b"\0"))
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or bom_less:
        raise DataError(f"{path}: is UTF-16 text; re-save the file as UTF-8")
    nul = head.find(b"\0")
    if nul >= 0:
        raise DataError(
            f"{path}: looks binary, not {fmt.upper()} text (NUL byte at byte {nul + 1}); check that it is the "
            "right file, or give it the extension of its real format"
        )


def cannot_read(fmt: str, detail: str) -> str:
    """'cannot read as FORMAT (the reader's reason); what to do', for binary formats and unknown failures."""
    detail = re.sub(r"^Could not open Parquet input source '.*?': ", "", detail)
    if fmt == "parquet":
        detail = detail.split(". ")[0]  # "...not found in footer. Either the file is corrupted or ..."
    fix = {
        "parquet": "the file is damaged or cut short, or is not Parquet: write or copy it again",
        "hdf5": "the file is damaged or is not HDF5: write or copy it again",
        "excel": "save it as .xlsx from Excel, or give the file the extension of its real format",
    }.get(fmt, "check that the file is what its extension says")
    return f"cannot read as {fmt.upper()} ({detail}); {fix}"


def cannot_parse(fmt: str, detail: str) -> str:
    """The pandas parser's reason, when `csv_problem` finds no line to blame."""
    detail = detail.replace("Error tokenizing data. C error: ", "")
    return f"cannot parse as {fmt.upper()} ({detail}); put texts that hold separators, quotes or line breaks in quotes"


def csv_problem(path: Path, sep: str) -> str | None:
    """The line where a CSV/TSV file breaks, found again with the csv module (pandas counts records, not lines):
    a quote that never closes, or a row with more fields than the header."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=sep, strict=True)
        start, width = 1, None  # the line the current record starts on; the header's field count
        try:
            for record in reader:
                if record and width is None:
                    width = len(record)
                elif record and len(record) > width:
                    shown = "a tab" if sep == "\t" else f"'{sep}'"
                    return (
                        f"line {start} has {len(record)} fields, the header has {width}; put texts that hold {shown} "
                        'in double quotes ("like, this")'
                    )
                start = reader.line_num + 1
        except csv.Error as err:
            if "unexpected end of data" in str(err):
                return (
                    f'line {start}: a quote (") opens a text that never closes; close it, or write a quote inside '
                    'a quoted text as two ("")'
                )
            return f"line {start}: {err}; check the quotes on that line"
    return None


def jsonl_problem(path: Path) -> str | None:
    """The first line of a JSON Lines file that is not a JSON object."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as err:
                where = f"{err.msg} at character {err.pos + 1}"
                return f"line {lineno} is not valid JSON ({where}); fix or remove that line"
            if not isinstance(value, dict):
                return f"line {lineno} is not a JSON object ({{...}}); write one object per line"
    return None


def not_decodable(path: Path, err: UnicodeDecodeError | None, encoding: str = "utf-8", plain: bool = True) -> str:
    """Name the first line that is not in the encoding, and suggest the encoding the bytes look like."""
    where = ""
    if plain:
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    raw.decode(encoding)
                except UnicodeDecodeError as line_err:
                    bad = raw[line_err.start : line_err.start + 1].hex()
                    where = (
                        f"line {lineno} is not valid {_name(encoding)} (byte 0x{bad} at character {line_err.start + 1})"
                    )
                    break
    if not where:
        where = f"not valid {_name(encoding)}" + (f" ({err.reason})" if err is not None else "")
    guess = guess_encoding(path) if plain else None
    if guess and guess != encoding.lower():
        return f"{path}: {where}; it looks like {guess}: pass --encoding {guess}, or re-save the file as UTF-8"
    return f"{path}: {where}; re-save the file as UTF-8, or pass --encoding with the file's encoding"


def _name(encoding: str) -> str:
    return "UTF-8" if is_utf8(encoding) else encoding


def guess_encoding(path: Path) -> str | None:
    """The likeliest encoding of a text file's first MiB (charset-normalizer), e.g. 'cp1252'; None if unsure."""
    from charset_normalizer import from_bytes

    with open(path, "rb") as fh:
        matches = from_bytes(fh.read(1 << 20))
    best = matches.best()
    if best is None:
        return None
    for match in matches:  # Western Windows text is the commonest; prefer it where it reads as well as the best
        if match.encoding == "cp1252" and match.chaos <= best.chaos + 0.01:
            return "cp1252"
    return best.encoding
