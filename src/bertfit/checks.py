"""Data checks run before anything is trained or scored: columns, empty texts, missing labels, classes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import DataConfig
from .errors import DataError
from .io import read_table, require_columns
from .labels import LabelSchema

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


def load_frame(data: DataSource, name: str = "data") -> tuple[pd.DataFrame, str]:
    """A DataFrame and a name for messages, from a path or a DataFrame."""
    if isinstance(data, pd.DataFrame):
        return data, name
    if isinstance(data, (str, Path)):
        return read_table(data), str(data)
    raise DataError(f"{name}: expected a file path or a pandas DataFrame, got {type(data).__name__}")


def join_text(df: pd.DataFrame, text_cols: list[str], source: str) -> pd.Series:
    """One text per row: the named columns joined by a space; None where every part is empty or null."""
    require_columns(df, text_cols, source, "--text-col")
    columns = [[clean_text(v) for v in df[c].tolist()] for c in text_cols]
    joined = [" ".join(p for p in parts if p is not None) or None for parts in zip(*columns)]
    return pd.Series(joined, index=df.index, dtype=object)


def load_labelled(
    data: DataSource,
    cfg: DataConfig,
    schema: LabelSchema | None = None,
    role: str = "training",
    known_from: str = "the model's training data",
) -> tuple[LabelledData, LabelSchema]:
    """Read texts and labels; drop (and report) rows with no text or no label; build or apply the schema."""
    df, source = load_frame(data, role)
    if len(df) == 0:
        raise DataError(f"{source}: no rows; expected a header row and at least one labelled row")
    texts, labels, dropped = usable_rows(df, cfg, source)
    for why, count in dropped.items():
        if count:
            logger.warning("%s: dropped %d of %d rows with %s", source, count, len(df), why)
    if len(texts) == 0:
        raise DataError(
            f"{source}: no rows left after dropping {dropped['empty text']} with empty text and "
            f"{dropped['missing label']} with no label in '{cfg.label_col}'"
        )
    new_schema = schema is None
    if schema is None:
        schema = LabelSchema.from_labels(labels, cfg.label_map)
    names = schema.to_names(labels, source, cfg.label_col, known_from)  # also checks --label-map covers all
    if new_schema:
        seen = names.unique()
        if len(seen) > max(20, len(labels) // 2):
            raise DataError(
                f"{source}: column '{cfg.label_col}' has {len(seen)} distinct values in {len(labels)} rows; "
                "it looks like text, not labels; pass --label-col with the label column"
            )
        if len(seen) < 2:
            raise DataError(
                f"{source}: column '{cfg.label_col}' has only one class ('{seen[0]}'); a classifier needs at least two"
            )
    ids = names.map(schema.label2id).to_numpy(dtype=np.int64)
    return LabelledData(texts.tolist(), ids, source, {k: v for k, v in dropped.items() if v}), schema


def usable_rows(df: pd.DataFrame, cfg: DataConfig, source: str) -> tuple[pd.Series, pd.Series, dict[str, int]]:
    """Joined texts and raw labels of the rows that have both, and how many rows were left out for each reason."""
    texts = join_text(df, cfg.text_cols, source)
    require_columns(df, [cfg.label_col], source, "--label-col")
    labels = df[cfg.label_col]
    no_text = texts.isna()
    no_label = labels.isna() | (labels.astype(str).str.strip() == "")
    dropped = {"empty text": int(no_text.sum()), "missing label": int((no_label & ~no_text).sum())}
    keep = ~(no_text | no_label)
    return texts[keep], labels[keep], dropped


def clean_text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    return text or None
