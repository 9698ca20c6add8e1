"""Multi-label classification: each text carries a set of labels, scored one sigmoid per label.

Training uses the model's own BCE-with-logits loss (`problem_type="multi_label_classification"`), or a
`pos_weight` BCE when class weights are asked for (`losses.class_weights`). After training, one threshold per
label is tuned on the validation rows (the F1-best cut of that label's scores) and stored with the model;
prediction marks a label when its score reaches its threshold.

Metrics at thresholds tuned on the same rows flatter the model (a label with no signal still finds a cut that
scores well on the rows it was chosen on), so the validation metrics are cross-fitted: the rows are split in two
halves, each half is predicted at the thresholds tuned on the other, and the metrics are taken over both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score, hamming_loss, precision_recall_fscore_support

DEFAULT_THRESHOLD = 0.5
GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)  # candidate thresholds
MIN_POSITIVES = 5  # labels with fewer validation positives keep DEFAULT_THRESHOLD: too few to tune on
SPLIT_SEED = 0  # the cross-fitting halves are drawn from this seed
CROSS_FITTED = "cross-fitted: each half of the rows predicted at thresholds tuned on the other half"
AS_STORED = "at the thresholds shown, which were not tuned on these rows"


def headline(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Scalar metrics over multi-hot rows (n, labels); `accuracy` is subset accuracy (every label right)."""
    y_true, y_pred = np.asarray(y_true).astype(np.int64), np.asarray(y_pred).astype(np.int64)
    return {
        "accuracy": float((y_true == y_pred).all(axis=1).mean()),
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        # a row with no labels, rightly predicted with none, counts as right (zero_division=1 for that row)
        "samples_f1": float(f1_score(y_true, y_pred, average="samples", zero_division=1.0)),
        "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "hamming_loss": float(hamming_loss(y_true, y_pred)),
    }


def report(
    y_true: np.ndarray, proba: np.ndarray, thresholds: np.ndarray, names: list[str], held_out: np.ndarray | None = None
) -> dict[str, Any]:
    """Headline metrics, per-label precision/recall/F1/support and each label's threshold.

    Rows are predicted at `thresholds`, or with `held_out` (rows, labels) each at its own thresholds, tuned on rows
    other than it (`cross_fitted_thresholds`); `thresholds_scored` says which."""
    y_pred = proba >= (thresholds[None, :] if held_out is None else held_out)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, average=None, labels=list(range(len(names))), zero_division=0
    )
    per_class = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s), "threshold": float(t)}
        for name, p, r, f, s, t in zip(names, precision, recall, f1, support, thresholds)
    }
    return {
        **headline(y_true, y_pred),
        "per_class": per_class,
        "labels": list(names),
        "n": int(len(y_true)),
        "rows_without_labels": int((np.asarray(y_true).sum(axis=1) == 0).sum()),
        "problem_type": "multi_label_classification",
        "thresholds_scored": AS_STORED if held_out is None else CROSS_FITTED,
        "labels_per_text": {"true": float(y_true.sum(1).mean()), "predicted": float(y_pred.sum(1).mean())},
    }


def tune_thresholds(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Per label, the grid threshold with the best F1 on these rows (ties: the one nearest 0.5); labels with
    fewer than MIN_POSITIVES positive rows keep 0.5."""
    y_true = np.asarray(y_true).astype(bool)
    thresholds = np.full(y_true.shape[1], DEFAULT_THRESHOLD)
    for label in np.flatnonzero(y_true.sum(0) >= MIN_POSITIVES):
        truth = y_true[:, label, None]
        predicted = proba[:, label, None] >= GRID[None, :]  # (rows, grid)
        tp = (predicted & truth).sum(0)
        f1 = 2 * tp / np.maximum(predicted.sum(0) + truth.sum(), 1)  # 2tp / (2tp + fp + fn)
        best = np.flatnonzero(f1 == f1.max())
        thresholds[label] = GRID[best[np.argmin(np.abs(GRID[best] - DEFAULT_THRESHOLD))]]
    return thresholds


def cross_fitted_thresholds(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The thresholds tuned on all rows (to store), and per row (rows, labels) those tuned on the other half of the
    rows (to score with): halves drawn from SPLIT_SEED."""
    first = np.zeros(len(y_true), dtype=bool)
    first[np.random.default_rng(SPLIT_SEED).permutation(len(y_true))[: (len(y_true) + 1) // 2]] = True
    held_out = np.empty(proba.shape, dtype=np.float64)
    held_out[~first] = tune_thresholds(y_true[first], proba[first])
    held_out[first] = tune_thresholds(y_true[~first], proba[~first])
    return tune_thresholds(y_true, proba), held_out


def start_at_base_rates(model: torch.nn.Module, labels: np.ndarray) -> None:
    """Set the classification head's bias to each label's log-odds in the training rows, so the untrained model
    scores every label at its base rate instead of 0.5: the first steps then learn features, not the priors.

    Without it, all-MiniLM-L6-v2 on 10,000 GoEmotions rows stayed at the all-labels-off plateau for two epochs
    (validation loss 0.150, macro-F1 0.04 at lr 1e-4 and 3e-4); with it the loss fell to 0.10 (macro-F1 0.37-0.39)."""
    n_labels = labels.shape[1]
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == n_labels]
    if not heads or heads[-1].bias is None:
        return
    rate = np.clip(labels.mean(axis=0), 1e-4, 1 - 1e-4)
    with torch.no_grad():
        heads[-1].bias.copy_(torch.from_numpy(np.log(rate / (1 - rate))).to(heads[-1].bias))
