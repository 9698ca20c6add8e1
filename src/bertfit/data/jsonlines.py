"""JSON Lines read value for value: each line's object decoded for the columns bertfit reads (texts, labels) and
kept as raw JSON text for the others, so that `1.50` is written back as `1.50` and a key a line lacks stays absent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bertfit.data.textfiles import ReadOptions, open_text
from bertfit.errors import DataError

RAW_JSON = "bertfit_raw_json"  # frame.attrs key: columns that hold raw JSON texts (JSON Lines pass-through)
_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def jsonl_frames(path: Path, rows: int, opts: ReadOptions, raw_except: Sequence[str] | None) -> Iterator[pd.DataFrame]:
    """Windows of `rows` objects. With `raw_except`, every other column holds each value's raw JSON text
    (None where a line lacks the key), named in attrs[RAW_JSON]; without it, every value is decoded."""
    decoded = set(raw_except or ())
    columns: dict[str, None] = {}
    batch: list[dict[str, Any]] = []
    with open_text(path, opts.encoding) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = _decoded(line) if raw_except is None else _mixed(line, decoded)
            except ValueError as err:
                raise DataError(f"{path}: line {lineno} {err}") from None
            for key in row:
                columns.setdefault(key)
            batch.append(row)
            if len(batch) == rows:
                yield _json_frame(batch, columns, raw_except)
                batch = []
    if batch:
        yield _json_frame(batch, columns, raw_except)


def _json_frame(batch: list[dict[str, Any]], columns: dict[str, None], raw_except: Sequence[str] | None
                ) -> pd.DataFrame:  # fmt: skip
    frame = pd.DataFrame({c: pd.Series([row.get(c) for row in batch], dtype=object) for c in columns})
    if raw_except is not None:
        frame.attrs[RAW_JSON] = [c for c in columns if c not in raw_except]
    return frame


class _Number(str):
    """A JSON number kept as its text (parse_float / parse_int hook): 1.50 stays '1.50'."""


_LITERALS = {True: "true", False: "false", None: "null"}
_NUMBERS_AS_TEXT = json.JSONDecoder(parse_float=_Number, parse_int=_Number)
_encode_string = json.encoder.encode_basestring  # JSON text of a str, non-ASCII as itself (C-accelerated)


def _decoded(line: str) -> dict[str, Any]:
    """One line's object, every value decoded."""
    try:
        value = _DECODER.decode(line)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        return {key: v for key, (v, _) in raw_members(line).items()}  # raises with the reason and position
    return value


def _mixed(line: str, decoded: set[str]) -> dict[str, Any]:
    """Decoded values for `decoded` keys, raw JSON texts for the others. Fast (the C decoder) for a line without
    nested values: numbers keep their own text, a string is re-encoded (the same JSON value; an escape such as
    \\u00e9 may come back as the character itself). Objects and arrays keep their exact text (raw_members)."""
    try:
        obj = _NUMBERS_AS_TEXT.decode(line)
    except json.JSONDecodeError:
        obj = None
    if isinstance(obj, dict) and not any(isinstance(v, (dict, list)) for v in obj.values()):
        return {key: _value(v) if key in decoded else _raw(v) for key, v in obj.items()}
    return {key: value if key in decoded else raw for key, (value, raw) in raw_members(line).items()}


def _value(v: Any) -> Any:
    if isinstance(v, _Number):
        return float(v) if any(c in v for c in ".eE") else int(v)
    return v


def _raw(v: Any) -> str:
    if isinstance(v, _Number):
        return str.__str__(v)
    if isinstance(v, str):
        return _encode_string(v)
    return _LITERALS[v]


def raw_members(line: str) -> dict[str, tuple[Any, str]]:
    """The members of one JSON object: name -> (decoded value, the value's exact JSON text)."""
    s = line
    i = _WS.match(s, 0).end()
    if s[i : i + 1] != "{":
        raise ValueError("is not a JSON object ({...}); write one object per line")
    i = _WS.match(s, i + 1).end()
    members: dict[str, tuple[Any, str]] = {}
    if s[i : i + 1] == "}":
        i += 1
    else:
        while True:
            if s[i : i + 1] != '"':
                _invalid("Expecting property name enclosed in double quotes", i)
            key, i = json.decoder.scanstring(s, i + 1)
            i = _WS.match(s, i).end()
            if s[i : i + 1] != ":":
                _invalid("Expecting ':' delimiter", i)
            i = _WS.match(s, i + 1).end()
            try:
                value, end = _DECODER.raw_decode(s, i)
            except json.JSONDecodeError as err:
                _invalid(err.msg, err.pos)
            members[key] = (value, s[i:end])
            i = _WS.match(s, end).end()
            sep, i = s[i : i + 1], i + 1
            if sep == "}":
                break
            if sep != ",":
                _invalid("Expecting ',' delimiter", i - 1)
            i = _WS.match(s, i).end()
    if s[i:].strip():
        _invalid("Extra data", i)
    return members


def _invalid(msg: str, pos: int) -> None:
    raise ValueError(f"is not valid JSON ({msg} at character {pos + 1}); fix or remove that line")


def json_display(raw: str | None) -> str | None:
    """The text a raw JSON value stands for in a CSV or Parquet cell: a string's contents, a number's or a
    literal's own text, an object's or array's JSON; None for null or an absent key."""
    if raw is None or raw == "null":
        return None
    return json.loads(raw) if raw.startswith('"') else raw
