"""The rows a review scores: the user's table as given, which of its rows are usable (a text and a label), their
texts and label ids, and which of them repeat a text under another label."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bertfit.checks.texts import text_hashes
from bertfit.config import DataConfig
from bertfit.data.rows import DataSource, load_frame, no_usable_rows, report_dropped, row_parts, shown_text
from bertfit.errors import DataError
from bertfit.labels import LabelSchema, is_list_column

logger = logging.getLogger(__name__)


@dataclass
class ReviewRows:
    """The input table and its usable rows: `positions` are 0-based row positions in the table."""

    frame: pd.DataFrame
    source: str
    positions: np.ndarray  # (usable,) int64
    texts: list  # str, or (text, second text) for pairs
    labels: np.ndarray  # (usable,) label ids
    schema: LabelSchema
    dropped: dict[str, int]

    @property
    def names(self) -> list[str]:
        return self.schema.names

    def subset(self, idx: np.ndarray) -> pd.DataFrame:
        """The usable rows at `idx` as the user gave them (every column), for training on them."""
        return self.frame.iloc[self.positions[idx]]

    def conflicting_duplicates(self) -> np.ndarray:
        """(usable,) bool: the text occurs again (after normalising case, width and spaces) under another label."""
        _, norm = text_hashes(pd.Series([shown_text(t) for t in self.texts], dtype=object))
        groups = pd.DataFrame({"h": norm, "y": self.labels}).groupby("h")["y"].nunique()
        return pd.Series(norm).map(groups).to_numpy() > 1


def load_review_rows(data: DataSource, cfg: DataConfig) -> ReviewRows:
    """Read the table whole and keep the rows that have a text and a label (the others are counted and logged)."""
    df, source = load_frame(data, "data", cfg.read_options)
    if len(df) == 0:
        raise no_usable_rows(source, 0, {}, cfg.label_col)
    df = df.reset_index(drop=True)
    texts, labels, no_text, no_label = row_parts(df, cfg, source)
    if cfg.is_multi_label or is_list_column(labels):
        raise DataError(f"{source}: column '{cfg.label_col}' holds label sets; review takes one label per row for now")
    keep = ~(no_text | no_label)
    dropped = {"empty text": int(no_text.sum()), "missing label": int((no_label & ~no_text).sum())}
    report_dropped(source, len(df), dropped)
    if not keep.any():
        raise no_usable_rows(source, len(df), dropped, cfg.label_col)
    schema = LabelSchema.from_labels(labels[keep], cfg.label_map, source, cfg.label_col)
    if len(schema.names) < 2:
        raise DataError(f"{source}: column '{cfg.label_col}' has only one class; a review needs at least two")
    ids = schema.encode(labels[keep], source, cfg.label_col, "the data")
    positions = np.flatnonzero(keep.to_numpy())
    return ReviewRows(df, source, positions, texts[keep].tolist(), ids, schema, {k: v for k, v in dropped.items() if v})
