"""Decoder: a model's logits -> probabilities -> labels, as records (`Classifier.predict`) or output columns.

Sliding windows' logits are first aggregated into one row per text (mean or max). Single-label models take the
softmax of the logits divided by the calibration temperature; multi-label models take each label's sigmoid, and a
label is on from its threshold. Empty texts have no logits: their rows are NaN, their label None.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from bertfit.errors import ConfigError, DataError
from bertfit.labels import LabelSchema
from bertfit.tokenization import aggregate_windows

OUTPUT_COLUMNS = ("pred_label", "pred_score")
MULTI_COLUMNS = ("pred_labels",)


class Decoder:
    """Labels from logits: the label schema, calibration temperature, multi-label thresholds, window aggregation."""

    def __init__(self, schema: LabelSchema, temperature: float, thresholds: np.ndarray, aggregate: str) -> None:
        self.schema = schema
        self.temperature = temperature  # 1.0: scores are the plain softmax
        self.thresholds = thresholds  # multi-label: a label is on from its threshold
        self.aggregate = aggregate

    @property
    def labels(self) -> list[str]:
        return list(self.schema.names)

    def probabilities(self, logits: np.ndarray, docs: np.ndarray | None, present: np.ndarray) -> np.ndarray:
        """(texts, labels) probabilities from the rows of logits of the `present` texts (NaN rows for the others);
        `docs` names the text of each row when texts were cut into sliding windows."""
        proba = np.full((len(present), len(self.schema)), np.nan, dtype=np.float32)
        if docs is not None:
            logits = aggregate_windows(logits, docs, int(present.sum()), self.aggregate)
        if self.schema.multi_label:
            proba[present] = sigmoid(logits)
        else:
            proba[present] = torch.softmax(torch.from_numpy(np.asarray(logits, np.float32)) / self.temperature, -1)
        return proba

    def records(self, proba: np.ndarray) -> list[dict[str, Any]]:
        """`Classifier.predict`'s result: the label and score of each row (multi-label: its labels and all scores)."""
        if self.schema.multi_label:
            return [
                {"labels": labels, "scores": None if labels is None else dict(zip(self.labels, map(float, row)))}
                for labels, row in zip(label_lists(proba, self.thresholds, self.labels), proba)
            ]
        return [
            {"label": None, "score": float("nan")}
            if np.isnan(row[0])
            else {"label": self.schema.names[int(row.argmax())], "score": float(row.max())}
            for row in proba
        ]

    def with_predictions(self, frame: pd.DataFrame, proba: np.ndarray, probs: bool, source: str) -> pd.DataFrame:
        """A copy of `frame` with the prediction columns (pred_label and pred_score, or pred_labels) and, with
        `probs` or for multi-label models, a prob_<label> column per label."""
        multi = self.schema.multi_label
        prob_cols = [f"prob_{name}" for name in self.labels] if probs or multi else []
        clash = [c for c in (*(MULTI_COLUMNS if multi else OUTPUT_COLUMNS), *prob_cols) if c in frame.columns]
        if clash:
            raise DataError(f"{source}: already has a column '{clash[0]}'; rename or drop it before predicting")
        out = frame.copy()
        if multi:
            out["pred_labels"] = pd.Series(self._joined_labels(proba), dtype=object, index=out.index)
        else:
            scored = ~np.isnan(proba[:, 0])
            names = np.asarray(self.labels, dtype=object)
            out["pred_label"] = pd.Series(np.where(scored, names[np.nan_to_num(proba).argmax(-1)], None), dtype=object)
            out["pred_score"] = np.where(scored, np.nan_to_num(proba).max(axis=1), np.nan).astype(float)
        for col, values in zip(prob_cols, proba.T):
            out[col] = values.astype(float)
        return out

    def _joined_labels(self, proba: np.ndarray) -> list[str | None]:
        sep = self.schema.label_sep
        return [
            None if labels is None else sep.join(labels) for labels in label_lists(proba, self.thresholds, self.labels)
        ]


def check_threshold(threshold: float | None) -> float | None:
    """A multi-label threshold override: None (the tuned ones), or a number strictly between 0 and 1."""
    if threshold is not None and not 0 < threshold < 1:
        raise ConfigError(f"threshold must be between 0 and 1 (got {threshold}); try 0.5")
    return threshold


def stored_thresholds(meta: dict[str, Any], schema: LabelSchema) -> np.ndarray:
    """A multi-label model's per-label thresholds from bertfit.json (0.5 for any it does not name)."""
    values = (meta.get("thresholds") or {}).get("values", {})
    return np.array([float(values.get(name, 0.5)) for name in schema.names])


def calibration_temperature(meta: dict[str, Any]) -> float:
    """The temperature a trained model's bertfit.json holds (1.0 when it has none, e.g. a plain HF folder)."""
    return float((meta.get("calibration") or {}).get("temperature", 1.0))  # 1.0 also when it was not applied


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))


def label_lists(proba: np.ndarray, thresholds: np.ndarray, names: list[str]) -> list[list[str] | None]:
    """Each row's labels at or above their thresholds (None for NaN rows: empty texts)."""
    hot = proba >= thresholds[None, :]
    return [None if np.isnan(row[0]) else [names[j] for j in np.flatnonzero(h)] for row, h in zip(proba, hot)]
