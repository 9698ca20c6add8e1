"""Classification metrics (scikit-learn): the headline numbers, the per-class report, Trainer's compute_metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_recall_fscore_support,
)

HEADLINE = ("accuracy", "macro_f1", "micro_f1", "weighted_f1", "mcc")
MULTI_HEADLINE = ("micro_f1", "macro_f1", "samples_f1", "weighted_f1", "accuracy", "hamming_loss")


def headline_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int) -> dict[str, float]:
    """The scalar metrics, each computed over all n_labels classes."""
    ids = list(range(n_labels))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(y_true, y_pred, labels=ids, average="micro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=ids, average="weighted", zero_division=0)),
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
    }


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Headline metrics, per-class precision/recall/F1/support and the confusion matrix (rows: true labels)."""
    ids = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    per_class = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(names, precision, recall, f1, support)
    }
    return {
        **headline_metrics(y_true, y_pred, len(names)),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
        "labels": list(names),
        "n": int(len(y_true)),
    }


def trainer_metrics(
    n_labels: int, multi_label: bool = False, docs: np.ndarray | None = None, aggregate: str = "mean"
) -> Callable[[Any], dict[str, float]]:
    """compute_metrics for transformers.Trainer: logits -> headline metrics (multi-label: at thresholds of 0.5).

    With `docs` (the document of each evaluation row, in the order Trainer visits them) the windows of a
    document are first aggregated into one prediction, so the metrics count documents."""

    def compute(eval_pred: Any) -> dict[str, float]:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(eval_pred.label_ids)
        if docs is not None and len(docs) == len(logits):
            logits, labels = per_document(logits, labels, docs, aggregate)
        if multi_label:
            from bertfit.evaluation.multilabel import headline
            from bertfit.prediction.decoder import sigmoid

            return headline(labels > 0.5, sigmoid(logits) >= 0.5)
        return headline_metrics(labels, logits.argmax(-1), n_labels)

    return compute


def per_document(
    logits: np.ndarray, labels: np.ndarray, docs: np.ndarray, aggregate: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """Window rows -> one row per document (in order of document id): aggregated logits, the document's label."""
    from bertfit.tokenization import aggregate_windows

    ids, first, index = np.unique(docs, return_index=True, return_inverse=True)
    return aggregate_windows(logits, index, len(ids), aggregate), labels[first]
