"""Rows a model can use: texts (text columns joined, or text pairs) and labels of each row, which rows lack
either, and labelled data read whole for evaluation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bertfit.config import DataConfig
from bertfit.data.io import PLAIN, ReadOptions, read_table, require_columns
from bertfit.errors import DataError
from bertfit.labels import LabelSchema, is_list_column

logger = logging.getLogger(__name__)

DataSource = str | Path | pd.DataFrame


@dataclass
class LabelledData:
    """Texts with label ids, ready to tokenize; `dropped` says how many rows were left out and why."""

    texts: list[str]
    labels: np.ndarray
    source: str
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)


def load_frame(data: DataSource, name: str = "data", opts: ReadOptions = PLAIN) -> tuple[pd.DataFrame, str]:
    """A DataFrame and a name for messages, from a path or a DataFrame."""
    if isinstance(data, pd.DataFrame):
        return data, name
    if isinstance(data, (str, Path)):
        return read_table(data, opts=opts), str(data)
    raise DataError(f"{name}: expected a file path or a pandas DataFrame, got {type(data).__name__}")


def join_text(df: pd.DataFrame, text_cols: list[str], source: str) -> pd.Series:
    """One text per row: the named columns joined by a space; None where every part is empty or null."""
    require_columns(df, text_cols, source, "--text-col")
    columns = [[clean_text(v) for v in df[c].tolist()] for c in text_cols]
    joined = [" ".join(p for p in parts if p is not None) or None for parts in zip(*columns)]
    return pd.Series(joined, index=df.index, dtype=object)


def require_text(df: pd.DataFrame, text_cols: list[str], source: str) -> None:
    """Fail when every text column holds only numbers (ids, star ratings, scores): the wrong column was picked."""
    examples = []
    for col in text_cols:
        values = df[col].dropna().astype(str).str.strip()
        values = values[values != ""]
        if values.empty or not _numbers(values.head(100)) or not _numbers(values):
            return
        examples.append(f"'{values.iloc[0]}'")
    named = " and ".join(f"'{c}'" for c in text_cols)
    what = f"column {named} holds" if len(text_cols) == 1 else f"columns {named} hold"
    raise DataError(
        f"{source}: {what} numbers, not text (e.g. {', '.join(examples)}); {_text_column_hint(df, text_cols)}"
    )


def _numbers(values: pd.Series) -> bool:
    return bool(pd.to_numeric(values, errors="coerce").notna().all())


def _text_column_hint(df: pd.DataFrame, exclude: list[str]) -> str:
    """--text-col with the column of the longest values that are not numbers, if there is one."""
    lengths = {}
    for col in df.columns:
        values = df[col].head(1000).dropna()
        text_like = pd.api.types.is_string_dtype(values) or values.dtype == object
        if col not in exclude and text_like and len(values) and not _numbers(values.astype(str)):
            lengths[col] = values.astype(str).str.len().mean()
    return f"pass --text-col {max(lengths, key=lengths.get)}" if lengths else "pass --text-col with the text column"


def load_labelled(
    data: DataSource,
    cfg: DataConfig,
    schema: LabelSchema | None = None,
    role: str = "training",
    known_from: str = "the model's training data",
) -> tuple[LabelledData, LabelSchema]:
    """Read texts and labels; drop (and report) rows with no text or no label; build or apply the schema."""
    df, source = load_frame(data, role, cfg.read_options)
    if len(df) == 0:
        raise no_usable_rows(source, 0, {}, cfg.label_col)
    texts, labels, dropped = usable_rows(df, cfg, source)
    report_dropped(source, len(df), dropped)
    if len(texts) == 0:
        raise no_usable_rows(source, len(df), dropped, cfg.label_col)
    if schema is not None and schema.multi_label:
        hot = schema.encode_sets(labels, source, cfg.label_col, known_from)
        return LabelledData(texts.tolist(), hot, source, {k: v for k, v in dropped.items() if v}), schema
    new_schema = schema is None
    if schema is None:
        schema = LabelSchema.from_labels(labels, cfg.label_map, source, cfg.label_col)
    names = schema.to_names(labels, source, cfg.label_col, known_from)  # also checks --label-map covers all
    if new_schema:
        seen = names.unique()
        if len(seen) > max(20, len(labels) // 2):
            raise labels_look_like_text(source, cfg.label_col, len(seen), len(labels))
        if len(seen) < 2:
            raise DataError(
                f"{source}: column '{cfg.label_col}' has only one class ('{seen[0]}'); a classifier needs at least two"
            )
    ids = names.map(schema.label2id).to_numpy(dtype=np.int64)
    return LabelledData(texts.tolist(), ids, source, {k: v for k, v in dropped.items() if v}), schema


def usable_rows(df: pd.DataFrame, cfg: DataConfig, source: str) -> tuple[pd.Series, pd.Series, dict[str, int]]:
    """Joined texts and raw labels of the rows that have both, and how many rows were left out for each reason."""
    texts, labels, no_text, no_label = row_parts(df, cfg, source)
    dropped = {"empty text": int(no_text.sum()), "missing label": int((no_label & ~no_text).sum())}
    keep = ~(no_text | no_label)
    return texts[keep], labels[keep], dropped


def report_dropped(source: str, rows: int, dropped: dict[str, int]) -> None:
    """Log how many of `rows` rows were left out, for each reason."""
    for why, count in dropped.items():
        if count:
            logger.warning("%s: dropped %d of %d rows with %s", source, count, rows, why)


def no_usable_rows(source: str, rows: int, dropped: dict[str, int], label_col: str) -> DataError:
    """The error for input without rows, or without any left after dropping those with no text or no label; the
    fix named is for the reason most rows were dropped."""
    if not rows:
        return DataError(f"{source}: no rows; expected a header row and at least one labelled row")
    if dropped.get("missing label", 0) >= dropped.get("empty text", 0):
        fix = "fill in the labels, or pass --label-col with the column that holds them"
    else:
        fix = "fill in the texts, or pass --text-col with the column that holds them"
    return DataError(
        f"{source}: no rows left after dropping {dropped['empty text']} with empty text and "
        f"{dropped['missing label']} with no label in '{label_col}'; {fix}"
    )


def labels_look_like_text(source: str, column: str, distinct: int, rows: int) -> DataError:
    return DataError(
        f"{source}: column '{column}' has {distinct} distinct values in {rows} rows; "
        "it looks like text, not labels; pass --label-col with the label column"
    )


def row_parts(df: pd.DataFrame, cfg: DataConfig, source: str) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series]:
    """Joined texts, raw labels, and the masks of rows with no text and with no label (all rows, in order).

    A missing label is a null; an empty one ("", spaces) too, except for multi-label, where it is an empty set."""
    texts, no_text = input_texts(df, cfg.text_cols, cfg.pair_col, source)
    require_columns(df, [cfg.label_col], source, "--label-col")
    labels = df[cfg.label_col]
    no_label = labels.isna()
    if not (cfg.is_multi_label or is_list_column(labels)):  # an empty set of labels is a row negative for every label
        no_label |= labels.astype(str).str.strip() == ""
    return texts, labels, no_text, no_label


def input_texts(
    df: pd.DataFrame, text_cols: list[str], pair_col: str | None, source: str
) -> tuple[pd.Series, pd.Series]:
    """What the model reads from each row, and the mask of rows with nothing to read. With `pair_col` each row
    is a (text, second text) tuple for the tokenizer's pair encoding, missing when either side is empty."""
    texts = join_text(df, text_cols, source)
    require_text(df, text_cols, source)
    if pair_col is None:
        return texts, texts.isna()
    second = join_text(df, [pair_col], source)
    missing = texts.isna() | second.isna()
    return pd.Series(list(zip(texts.tolist(), second.tolist())), index=df.index, dtype=object), missing


def shown_text(value: str | tuple[str, str]) -> str:
    """A model input as one string: a pair's two texts joined by ' [SEP] ' (for hashing, checks and examples)."""
    return value if isinstance(value, str) else " [SEP] ".join(value)


def clean_text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    return text or None
