"""LabelSchema: label names <-> ids, saved with the model so prediction speaks the user's label names."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bertfit.errors import DataError

logger = logging.getLogger(__name__)

MULTI_LABEL = "multi_label_classification"
SINGLE_LABEL = "single_label_classification"
SET_JOIN = "\x1f"  # joins the names of one row's label set inside bertfit (caches, codes); never shown


@dataclass
class LabelSchema:
    """The classes a model predicts, in id order."""

    names: list[str]
    problem_type: str = SINGLE_LABEL
    raw_map: dict[str, str] = field(default_factory=dict)  # --label-map used at training time
    label_sep: str = ","  # multi-label: what separates the labels of a row in a text column (and in predictions)

    @property
    def multi_label(self) -> bool:
        return self.problem_type == MULTI_LABEL

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_labels(
        cls, labels: pd.Series, label_map: dict[str, str] | None = None, source: str = "data", column: str = "label"
    ) -> LabelSchema:
        """Collect the classes seen in a label column (already cleaned of nulls), typed once from all its values.

        Labels are strings (see `label_strings`): ordered as integers when every one is an integer ('1', '2',
        '10'; '-1', '0', '1'), else as strings. With a label map, the classes are the mapped names that occur, in
        the map's order; an entry whose label never occurs is logged and left out (it would be a class no row has).
        """
        raw = set(label_strings(labels).unique())
        if not label_map:
            return cls(names=_sorted_labels(raw))
        for key, name in label_map.items():
            if key not in raw:
                logger.warning(
                    "%s: --label-map entry '%s=%s' matches no label in column '%s'; ignored", source, key, name, column
                )
        occurring = {label_map.get(value, value) for value in raw}
        names = [name for name in dict.fromkeys(label_map.values()) if name in occurring]
        return cls(names=names, raw_map=dict(label_map))

    def to_names(
        self,
        labels: pd.Series,
        source: str,
        column: str,
        known_from: str = "the model's training data",
        rows: pd.Series | None = None,
    ) -> pd.Series:
        """Raw labels -> label names (applying the label map); unknown values are an error.

        `rows` says how many rows each label stands for (when `labels` holds distinct values), for the message.
        """
        raw = label_strings(labels)
        rows = pd.Series(1, index=raw.index) if rows is None else pd.Series(np.asarray(rows), index=raw.index)
        if self.raw_map:
            unmapped = sorted(set(raw.unique()) - set(self.raw_map) - set(self.names))
            if unmapped:
                example = unmapped[0]
                raise DataError(
                    f"{source}: --label-map leaves label '{example}' of column '{column}' unmapped "
                    f"({int(rows[raw.isin(unmapped)].sum())} rows); add '{example}=NAME' to --label-map"
                )
            raw = raw.map(lambda v: self.raw_map.get(v, v))
        unknown = sorted(set(raw.unique()) - set(self.names))
        if unknown:
            shown = ", ".join(f"'{u}'" for u in unknown[:5])
            raise DataError(
                f"{source}: column '{column}' has labels that {known_from} never saw: {shown} "
                f"({int(rows[raw.isin(unknown)].sum())} rows); known labels: {', '.join(self.names)}"
            )
        return raw

    def encode(
        self, labels: pd.Series, source: str, column: str, known_from: str = "the model's training data"
    ) -> np.ndarray:
        """Raw labels -> integer ids."""
        lookup = self.label2id
        return self.to_names(labels, source, column, known_from).map(lookup).to_numpy(dtype=np.int64)

    def encode_sets(
        self,
        labels: pd.Series,
        source: str,
        column: str,
        known_from: str = "the model's training data",
        rows: pd.Series | None = None,
    ) -> np.ndarray:
        """Multi-label: raw label sets (lists, or strings split on `label_sep`) -> multi-hot rows (n, labels) uint8."""
        sets = label_sets(labels, self.label_sep).tolist()
        members = [s.split(SET_JOIN) if s else [] for s in sets]
        flat = pd.Series([m for ms in members for m in ms], dtype=object)
        counts = None
        if rows is not None:
            counts = pd.Series([int(n) for ms, n in zip(members, np.asarray(rows)) for _ in ms], dtype=np.int64)
        names = self.to_names(flat, source, column, known_from, rows=counts).map(self.label2id).to_numpy()
        hot = np.zeros((len(sets), len(self.names)), dtype=np.uint8)
        hot[np.repeat(np.arange(len(sets)), [len(m) for m in members]), names.astype(np.int64)] = 1
        return hot

    def to_dict(self) -> dict[str, Any]:
        out = {"names": self.names, "problem_type": self.problem_type, "label_map": self.raw_map}
        if self.multi_label:
            out["label_sep"] = self.label_sep
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelSchema:
        return cls(
            names=list(data["names"]),
            problem_type=data.get("problem_type", SINGLE_LABEL),
            raw_map=dict(data.get("label_map") or {}),
            label_sep=data.get("label_sep", ","),
        )


def label_strings(labels: pd.Series) -> pd.Series:
    """Labels as stripped strings; whole-number floats (1.0, from a column with gaps) read as '1'."""
    return labels.map(_label_string).astype(object)


def _label_string(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def is_list_column(labels: pd.Series) -> bool:
    """Whether a label column holds lists (Parquet list columns, JSON arrays): then each row is a set of labels."""
    first = labels.dropna().head(1).tolist()
    return bool(first) and isinstance(first[0], (list, tuple, np.ndarray))


def label_sets(labels: pd.Series, sep: str = ",") -> pd.Series:
    """Each row's labels as one canonical string: names stripped, deduplicated, sorted, joined by SET_JOIN.

    A row holds a list of labels, or a string of labels separated by `sep` ('admiration,joy'); an empty list is
    a row with none of the labels."""

    def one(value: Any) -> str:
        if isinstance(value, (list, tuple, np.ndarray)):
            parts = [_label_string(v) for v in value]
        else:
            parts = _label_string(value).split(sep)
        return SET_JOIN.join(sorted({p.strip() for p in parts if p.strip()}))

    return labels.map(one).astype(object)


def set_members(sets: Iterable[str]) -> list[str]:
    """The single labels of canonical label sets (see `label_sets`), in order of first appearance."""
    return list(dict.fromkeys(name for s in sets for name in s.split(SET_JOIN) if name))


def _sorted_labels(values: Iterable[str]) -> list[str]:
    """Label strings in class order: as integers when every one is an integer ('1', '2', '10'), else as strings."""
    values = set(values)
    if values and all(_INTEGER.fullmatch(v) for v in values):
        return sorted(values, key=lambda v: (int(v), v))  # '01' and '1' stay two labels, next to each other
    return sorted(values)


_INTEGER = re.compile(r"[+-]?[0-9]+")


class LabelCodes:
    """Label values -> small integer codes in order of first appearance, shared by every window (and split) they
    come from, with the rows of each code: a compact form of a label column seen in a stream.

    Multi-label (asked for, or a column of lists): a code stands for one label set, in canonical form (see
    `label_sets`). `label_map` renames each label (each member of a set) before it gets a code. With `cap`, at most
    that many values get codes (bounded memory when the column holds text): later ones get -1 and `full` is set.
    """

    def __init__(
        self, multi: bool = False, sep: str = ",", label_map: dict[str, str] | None = None, cap: int | None = None
    ) -> None:
        self.multi, self.sep = multi, sep
        self.label_map = label_map or {}
        self.cap = cap
        self.codes: dict[str, int] = {}
        self.counts: list[int] = []
        self.full = False

    def add(self, raw: pd.Series) -> np.ndarray:
        """The codes of one window's raw labels (new values get new codes)."""
        if not self.codes and is_list_column(raw):
            self.multi = True
        strings = label_sets(raw, self.sep) if self.multi else label_strings(raw)
        if self.label_map:  # each member of a label set is renamed on its own
            rename = self.label_map.get
            strings = strings.map(lambda v: SET_JOIN.join(sorted({rename(m, m) for m in v.split(SET_JOIN)})))
        for value in strings.unique().tolist():
            if value not in self.codes:
                if self.cap is not None and len(self.codes) >= self.cap:
                    self.full = True
                    break
                self.codes[value] = len(self.codes)
                self.counts.append(0)
        codes = strings.map(self.codes).fillna(-1).to_numpy(dtype=np.int32)
        for code, count in enumerate(np.bincount(codes[codes >= 0], minlength=len(self.codes)).tolist()):
            self.counts[code] += count
        return codes

    @property
    def names(self) -> list[str]:
        """Each code's label; for multi-label, its label set written as in the data ('joy,love')."""
        return [v.replace(SET_JOIN, self.sep) for v in self.codes] if self.multi else list(self.codes)

    def members(self, counts: np.ndarray | None = None) -> dict[str, int]:
        """Single labels and their rows (from per-code row counts); multi-label sets count for each member."""
        counts = np.ones(len(self.codes), dtype=np.int64) if counts is None else counts
        found: dict[str, int] = {}
        for value, n in zip(self.codes, counts.tolist()):
            for name in value.split(SET_JOIN) if self.multi else [value]:
                if name:
                    found[name] = found.get(name, 0) + int(n)
        return found

    def to_meta(self) -> dict[str, Any]:
        return {"label_values": list(self.codes), "label_counts": self.counts, "multi_label": self.multi}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> LabelCodes:
        codes = cls(bool(meta.get("multi_label")))
        codes.codes = {value: i for i, value in enumerate(meta["label_values"])}
        codes.counts = list(meta["label_counts"])
        return codes

    def schema(self, label_map: dict[str, str] | None, label_sep: str | None, source: str, column: str) -> LabelSchema:
        """A new label schema for the labels seen; fewer than two classes is an error."""
        values, rows = list(self.codes), pd.Series(self.counts)
        if self.multi:
            values, rows = set_members(values), None
        schema = LabelSchema.from_labels(pd.Series(values, dtype=object), label_map, source, column)
        if self.multi:
            schema.problem_type, schema.label_sep = MULTI_LABEL, label_sep or ","
        seen = schema.to_names(pd.Series(values, dtype=object), source, column, rows=rows).unique()
        if len(seen) < 2:
            found = f"only one class ('{seen[0]}')" if len(seen) else "no labels in any row"
            raise DataError(f"{source}: column '{column}' has {found}; a classifier needs at least two classes")
        return schema

    def label_ids(self, schema: LabelSchema, source: str, column: str, known_from: str) -> np.ndarray:
        """Label id for each code (multi-label: a multi-hot row per label set); labels the schema does not know
        are an error that counts their rows."""
        values, rows = pd.Series(list(self.codes), dtype=object), pd.Series(self.counts)
        if schema.multi_label != self.multi:
            kinds = ["one label per row", "sets of labels"]
            raise DataError(
                f"{source}: column '{column}' holds {kinds[self.multi]}, but {known_from} has "
                f"{kinds[schema.multi_label]}; use the same label format (and --multi-label / --label-sep) for both"
            )
        if schema.multi_label:
            sets = values.map(lambda v: v.split(SET_JOIN) if v else [])
            return schema.encode_sets(sets, source, column, known_from, rows=rows)
        names = schema.to_names(values, source, column, known_from, rows=rows)
        return names.map(schema.label2id).to_numpy(dtype=np.int64)
