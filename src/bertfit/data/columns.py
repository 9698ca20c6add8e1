"""Columns a table must have, and, when one is missing, the likeliest fix: another column, another separator,
or names for a file whose first row is data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bertfit.errors import DataError


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
