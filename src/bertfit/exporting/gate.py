"""The accuracy gate of an export: the exported engine against the fp32 torch model on labelled rows (a --validate
file, or the validation sample kept by training): label agreement, accuracy and macro-F1 of both, and the expected
calibration error. An export that agrees on fewer than 99.5% of the rows, or loses more than 0.5 point of macro-F1,
does not pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from bertfit.evaluation.calibration import expected_calibration_error
from bertfit.prediction.classifier import Classifier
from bertfit.prediction.decoder import label_lists
from bertfit.tokenization import Encoded

MIN_AGREEMENT = 0.995
MAX_F1_DROP = 0.005  # half a point of macro-F1


@dataclass
class GateRows:
    """Labelled rows to check an export on, encoded as the model's Scorer takes them."""

    encoded: Encoded
    labels: np.ndarray  # (texts,) label ids; multi-label: (texts, labels) 0/1
    source: str  # the --validate file, or "the validation sample kept by training"


def probabilities(clf: Classifier, rows: GateRows) -> np.ndarray:
    """(texts, labels) probabilities of `clf` on the rows, through its Scorer and Decoder (calibration, windows)."""
    logits = clf.scorer.logits(rows.encoded, clf.default_batch_tokens(), None)
    present = np.ones(len(rows.labels), dtype=bool)
    return clf.decoder.probabilities(logits, rows.encoded.docs, present)


def figures(reference: np.ndarray, exported: np.ndarray, rows: GateRows, clf: Classifier) -> dict[str, Any]:
    """The gate's numbers: agreement of the export's labels with the reference's, and each one's scores."""
    multi = clf.schema.multi_label
    ref_pred, exp_pred = _decisions(reference, clf), _decisions(exported, clf)
    agree = (ref_pred == exp_pred).all(axis=1) if multi else ref_pred == exp_pred
    before, after = _scores(reference, ref_pred, rows, multi), _scores(exported, exp_pred, rows, multi)
    drop = before["macro_f1"] - after["macro_f1"]
    passed = bool(agree.mean() >= MIN_AGREEMENT and drop <= MAX_F1_DROP)
    return {"rows": len(rows.labels), "data": rows.source, "agreement": round(float(agree.mean()), 6),
            "fp32": before, "export": after, "macro_f1_drop": round(float(drop), 6), "passed": passed,
            "rule": f"agreement >= {MIN_AGREEMENT} and macro-F1 drop <= {MAX_F1_DROP}"}  # fmt: skip


def _decisions(proba: np.ndarray, clf: Classifier) -> np.ndarray:
    """Each row's label id, or for multi-label its 0/1 decision per label at the model's thresholds."""
    if not clf.schema.multi_label:
        return proba.argmax(-1)
    on = label_lists(proba, clf.thresholds, clf.labels)
    return np.array([[name in labels for name in clf.labels] for labels in on], dtype=np.int64)


def _scores(proba: np.ndarray, pred: np.ndarray, rows: GateRows, multi: bool) -> dict[str, float]:
    """Accuracy (multi-label: every label right), macro-F1 and, for one label per text, the ECE."""
    labels = rows.labels
    n_labels = proba.shape[1]
    out = {
        "accuracy": float(accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, average="macro", labels=None if multi else list(range(n_labels)),
                                   zero_division=0)),
    }  # fmt: skip
    if not multi:
        out["ece"] = float(expected_calibration_error(proba, labels))
    return {k: round(v, 6) for k, v in out.items()}
