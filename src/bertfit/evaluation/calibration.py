"""Calibrated scores: temperature scaling fitted on the validation split, and the expected calibration error.

A fine-tuned classifier's softmax scores are usually over-confident: of the texts it scores 0.95, fewer than 95% are
right. Temperature scaling (Guo et al., 2017) divides every logit by one number T, fitted to minimise the negative
log-likelihood (NLL, log-loss) of the validation labels; it changes no prediction, only how sure each one claims to be.

A temperature fitted on the wrong rows lies, so bertfit fits one only when the validation rows can support it:

- at least MIN_ROWS (100) rows and MIN_ERRORS (10) misclassified rows. On a split the model gets entirely right the
  NLL keeps falling as T -> 0 (sharper scores only ever help a right answer), so a fit there drives T to its bound and
  every later score to 1.0; with a handful of errors, those few rows decide T alone.
- T is searched in T_RANGE, 0.5 to 5. Fine-tuned classifiers are over-confident by a modest factor, so T > 1 is the
  usual answer; sharpening every score by more than 2x (T < 0.5) is what a split with too few errors asks for, not a
  real effect, and a model whose logits are more than 5x too sharp is better retrained than rescaled (at T = 5 scores
  of 0.99 on two classes become 0.72).
- it must lower the NLL on rows it was not fitted on (cross-fitting): the rows are split in two halves (each with half
  of the errors), T is fitted on one half and scored on the other, both ways round. Only when both halves agree that
  it helps, each by at least MIN_GAIN (1% of its NLL), is T refitted on all rows and applied; otherwise T = 1 (plain
  softmax). A smaller gain is within what a T fitted to noise wins by chance, and changes scores too little to matter.

Whatever the outcome, `Calibration.reason` says in one line why, and bertfit.json, metrics.json and the model card
carry it. The figures "after" are cross-fitted: each half scored with the T fitted on the other half.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

ECE_BINS = 15
MIN_ROWS = 100  # validation rows needed before a temperature is fitted
MIN_ERRORS = 10  # misclassified validation rows needed before a temperature is fitted
T_RANGE = (0.5, 5.0)  # the temperatures searched
MIN_GAIN = 0.01  # the share of its log-loss each held-out half must lose for a temperature to be applied
SPLIT_SEED = 0  # the cross-fitting halves are drawn from this seed: the same rows give the same temperature


@dataclass
class Calibration:
    """A temperature with the validation figures before and after it, and why it was (not) applied.

    `applied` False means T = 1 (plain softmax): too few rows or errors to fit one, or one fitted on half the rows
    did not lower the log-loss on the other half. With `applied`, the figures after are cross-fitted (each half of the
    rows scored with the temperature fitted on the other half); without, they equal those before."""

    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    applied: bool
    rows: int
    method: str = "temperature"
    errors: int | None = None  # misclassified validation rows (None in models from before this was recorded)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> Calibration:
    """The temperature for these validation rows under the rule in this module's docstring: fitted (minimising NLL
    within T_RANGE) only with MIN_ROWS rows and MIN_ERRORS errors, and applied only if it lowers the NLL of held-out
    halves by MIN_GAIN both ways round; otherwise 1, with the reason."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise ValueError("no rows to fit a temperature on")
    rows, correct = len(labels), logits.argmax(axis=1) == labels
    errors = int((~correct).sum())
    ece, nll = expected_calibration_error(softmax(logits), labels), _nll(logits, labels)

    def plain(reason: str) -> Calibration:
        return Calibration(1.0, ece, ece, nll, nll, False, rows, errors=errors, reason=reason)

    if rows < MIN_ROWS:
        return plain(f"not fitted: {rows} validation rows, fewer than {MIN_ROWS}")
    if errors < MIN_ERRORS:
        return plain(f"not fitted: {errors} of {rows} validation rows misclassified, fewer than {MIN_ERRORS}")
    crossed, checks = _cross_fitted(logits, labels, correct)
    if any(after > (1 - MIN_GAIN) * before for before, after in checks):
        shown = ", ".join(f"{before:.4f} -> {after:.4f}" for before, after in checks)
        return plain(f"not applied: fitted on either half of the validation rows, it did not lower the log-loss of "
                     f"the other half by {MIN_GAIN:.0%} ({shown})")  # fmt: skip
    temperature = _best_temperature(logits, labels)
    nll_after = _nll(crossed, labels)
    return Calibration(
        temperature=temperature,
        ece_before=ece,
        ece_after=expected_calibration_error(softmax(crossed), labels),
        nll_before=nll,
        nll_after=nll_after,
        applied=True,
        rows=rows,
        errors=errors,
        reason=f"applied: fitted on either half of the validation rows, it lowered the log-loss of the other half "
        f"({nll:.4f} -> {nll_after:.4f} over both); refitted on all {rows} rows",
    )


def _cross_fitted(
    logits: np.ndarray, labels: np.ndarray, correct: np.ndarray
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Each half's logits divided by the temperature fitted on the other half, and per half its NLL before and after.
    The halves are drawn from SPLIT_SEED, each with half of the right and half of the wrong rows."""
    rng = np.random.default_rng(SPLIT_SEED)
    first = np.zeros(len(labels), dtype=bool)
    for group in (np.flatnonzero(correct), np.flatnonzero(~correct)):
        first[rng.permutation(group)[: (len(group) + 1) // 2]] = True
    halves = (np.flatnonzero(first), np.flatnonzero(~first))
    crossed, checks = np.empty_like(logits), []
    for fit_on, check_on in (halves, halves[::-1]):
        crossed[check_on] = logits[check_on] / _best_temperature(logits[fit_on], labels[fit_on])
        checks.append((_nll(logits[check_on], labels[check_on]), _nll(crossed[check_on], labels[check_on])))
    return crossed, checks


def _best_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in T_RANGE with the lowest NLL on these rows (searched on log T)."""
    best = minimize_scalar(lambda log_t: _nll(logits / np.exp(log_t), labels), bounds=np.log(T_RANGE), method="bounded")
    return float(np.exp(best.x))


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64), axis=-1))


def rescale(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities at another temperature: softmax(log p / T) equals softmax(logits / T)."""
    if temperature == 1.0:
        return proba
    with np.errstate(divide="ignore"):
        return softmax(np.log(np.asarray(proba, dtype=np.float64)) / temperature).astype(proba.dtype)


def expected_calibration_error(proba: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE over equal-width confidence bins: the row-weighted mean of |accuracy - mean confidence| per bin."""
    table = reliability_table(proba, labels, bins)
    total = sum(b["rows"] for b in table)
    return float(sum(b["rows"] * abs(b["accuracy"] - b["confidence"]) for b in table) / max(total, 1))


def reliability_table(proba: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per non-empty confidence bin: its range, rows, mean confidence of the predicted label, and accuracy."""
    confidence = np.asarray(proba).max(axis=1)
    correct = np.asarray(proba).argmax(axis=1) == np.asarray(labels)
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)  # bin b holds (b/bins, (b+1)/bins]
    table = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            table.append(
                {
                    "low": b / bins,
                    "high": (b + 1) / bins,
                    "rows": int(mask.sum()),
                    "confidence": float(confidence[mask].mean()),
                    "accuracy": float(correct[mask].mean()),
                }
            )
    return table


def _nll(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(-log_softmax(logits, axis=-1)[np.arange(len(labels)), labels].mean())
