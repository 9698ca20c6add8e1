"""CSV, TSV and JSON Lines written value for value: text as it was read, typed values as their own text."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from typing import IO, Any

from bertfit.data.jsonlines import json_display


def cell_text(value: Any) -> str:
    """A typed value (from Parquet, HDF5, Excel, or a prediction column) as CSV text; "" for null."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def json_text(value: Any) -> str:
    """A typed value as JSON text (NaN as null; dates and other objects as their text)."""
    if isinstance(value, float) and value != value:
        return "null"
    return json.dumps(value, ensure_ascii=False, default=str)


class TextWriter:
    """Rows out as CSV, TSV or JSON Lines. Raw JSON columns go out as their JSON text (JSON Lines) or as the text
    they stand for (CSV/TSV). TSV is written unquoted, as it is read; only a field holding a tab or a line break is
    quoted. Call `write(columns)` with one list of Python values per column."""

    def __init__(self, fh: IO[str], fmt: str, names: list[str], raw_json: Sequence[str] = ()) -> None:
        self.fh, self.fmt, self.names = fh, fmt, names
        self.raw = [name in raw_json for name in names]
        if fmt == "csv":
            self.writer = csv.writer(fh, lineterminator="\n")
        elif fmt == "tsv":
            self.writer = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None, lineterminator="\n")
            self.quoted = csv.writer(fh, delimiter="\t", lineterminator="\n")
        self.keys = [json.dumps(name, ensure_ascii=False) for name in names]

    def header(self) -> None:
        if self.fmt != "jsonl":
            self.writer.writerow(self.names)

    def write(self, columns: list[list[Any]]) -> None:
        if self.fmt == "jsonl":
            self._write_jsonl(columns)
            return
        texts = [
            [cell_text(json_display(v)) for v in col] if raw else [cell_text(v) for v in col]
            for col, raw in zip(columns, self.raw)
        ]
        for row in zip(*texts):
            if self.fmt == "tsv" and any(("\t" in f or "\n" in f or "\r" in f) for f in row):
                self.quoted.writerow(row)
            else:
                self.writer.writerow(row)

    def _write_jsonl(self, columns: list[list[Any]]) -> None:
        for row in zip(*columns):
            parts = []
            for key, raw, value in zip(self.keys, self.raw, row):
                if raw:
                    if value is not None:  # an absent key stays absent
                        parts.append(f"{key}:{value}")
                else:
                    parts.append(f"{key}:{json_text(value)}")
            self.fh.write("{" + ",".join(parts) + "}\n")
