"""From each row's probabilities (out-of-fold, or averaged over training epochs) to the ranked table of label issues:
cleanlab's verdicts and label-quality scores, the estimated noise matrix, and the rows the model finds ambiguous or
unusual, or whose text occurs again under another label.

Unusual rows (outliers) are those in a region of low density of the fine-tuned encoder's embeddings: cleanlab's kNN
score, exp(-d / m), d the row's mean cosine distance to its 10 nearest reference rows and m the median of that
distance among the reference rows themselves (each without itself). Where the reference has too few rows, the
score comes from the probabilities instead (cleanlab's entropy-based score); review.json says which."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bertfit.errors import DataError, MissingDependency
from bertfit.reviewing.rows import ReviewRows

logger = logging.getLogger(__name__)

AMBIGUOUS_MARGIN = 0.2  # the two likeliest labels within 0.2 of each other
OUTLIER_SHARE = 0.02  # the 2% of rows with the lowest out-of-distribution score
OUTLIER_NEIGHBOURS = 10  # k of the kNN outlier score (cleanlab's default); the reference needs more rows than k


@dataclass
class Findings:
    """Per usable row: the verdicts and scores a review writes, in the rows' order."""

    probs: np.ndarray
    is_issue: np.ndarray
    quality: np.ndarray
    outlier_score: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # method-specific columns (dynamics figures)
    noise_matrix: np.ndarray | None = None  # P(given label = i | true label = j), cleanlab's estimate
    outlier_source: str = "probabilities"  # or "embeddings"

    @property
    def suggested(self) -> np.ndarray:
        return self.probs.argmax(1)

    @property
    def ambiguous(self) -> np.ndarray:
        top = np.sort(self.probs, axis=1)[:, -2:]
        return (top[:, 1] - top[:, 0]) < AMBIGUOUS_MARGIN


def import_cleanlab() -> Any:
    try:
        import cleanlab.count
        import cleanlab.filter
        import cleanlab.outlier
        import cleanlab.rank
    except ImportError:
        raise MissingDependency("cleanlab", "review", "bertfit review") from None
    return cleanlab


def crossval_findings(probs: np.ndarray, labels: np.ndarray, outliers: np.ndarray | None = None) -> Findings:
    """cleanlab on out-of-fold probabilities: find_label_issues, get_label_quality_scores (self-confidence), the
    noise matrix; the outlier scores from the fold models' embeddings (`outliers`), else from the probabilities."""
    cl = import_cleanlab()
    probs = _normalised(probs)
    issues = cl.filter.find_label_issues(labels=labels, pred_probs=probs)
    quality = cl.rank.get_label_quality_scores(labels=labels, pred_probs=probs)
    _, noise, _, _ = cl.count.estimate_py_and_noise_matrices_from_probabilities(labels, probs)
    score, source = _outliers(cl, probs, labels, outliers)
    return Findings(probs, np.asarray(issues, bool), quality, score, noise_matrix=noise, outlier_source=source)


def dynamics_findings(
    mean_probs: np.ndarray, labels: np.ndarray, figures: Any, outliers: np.ndarray | None = None
) -> Findings:
    """Training dynamics: a row is an issue when, averaged over the epochs, its given label's logit stayed below
    another label's (negative area under the margin); quality is its mean confidence in the given label."""
    cl = import_cleanlab()
    probs = _normalised(mean_probs)
    extra = {"confidence": figures.confidence, "variability": figures.variability,
             "correctness": figures.correctness, "aum": figures.aum}  # fmt: skip
    score, source = _outliers(cl, probs, labels, outliers)
    return Findings(probs, figures.aum < 0, figures.confidence, score, extra, outlier_source=source)


def embedding_outliers(reference: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray | None:
    """cleanlab's kNN outlier score, exp(-d / m), of the reference rows among themselves (each without itself), or
    of `rows` among the `reference` rows; d is a row's mean cosine distance to its OUTLIER_NEIGHBOURS nearest
    reference rows, m the median of d among the reference rows. None when the reference has too few rows."""
    if len(reference) <= OUTLIER_NEIGHBOURS:
        return None
    ood = import_cleanlab().outlier.OutOfDistribution({"k": OUTLIER_NEIGHBOURS})
    scores = ood.fit_score(features=reference, verbose=False)  # fitting sets m, the reference's own median
    return np.asarray(scores if rows is None else ood.score(features=rows), dtype=np.float64)


def _normalised(probs: np.ndarray) -> np.ndarray:
    probs = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None)
    return probs / probs.sum(1, keepdims=True)


def _outliers(cl: Any, probs: np.ndarray, labels: np.ndarray, embedded: np.ndarray | None) -> tuple[np.ndarray, str]:
    """The outlier scores and where they came from: the embeddings' scores when given, else cleanlab's
    out-of-distribution score from the probabilities (lower: less like the rest of the data)."""
    if embedded is not None:
        return np.asarray(embedded, dtype=np.float64), "embeddings"
    scores = cl.outlier.OutOfDistribution().fit_score(pred_probs=probs, labels=labels, verbose=False)
    return np.asarray(scores, dtype=np.float64), "probabilities"


WRITTEN = ["row", "given_label", "suggested_label", "label_quality", "is_label_issue", "conflicting_duplicate",
           "ambiguous", "outlier_score", "outlier", "confidence", "variability", "correctness", "aum"]  # fmt: skip


def check_columns(rows: ReviewRows, more: list[str] = ()) -> None:
    """The input has no column of a name the review writes (checked before any training)."""
    written = [*WRITTEN, *more, *(f"prob_{name}" for name in rows.names)]
    clash = [c for c in written if c in rows.frame.columns]
    if clash:
        raise DataError(f"{rows.source}: already has a column '{clash[0]}' that the review writes; rename it")


def issue_table(rows: ReviewRows, found: Findings) -> pd.DataFrame:
    """`row` (0-based position in the input), every input column as given, then the review's columns; the most
    likely label errors first (cleanlab's issues by rising quality, then every other row by rising quality)."""
    names = np.array(rows.names, dtype=object)
    ours = {
        "given_label": names[rows.labels],
        "suggested_label": names[found.suggested],
        "label_quality": found.quality,
        "is_label_issue": found.is_issue,
        "conflicting_duplicate": rows.conflicting_duplicates(),
        "ambiguous": found.ambiguous,
        "outlier_score": found.outlier_score,
        "outlier": found.outlier_score <= np.quantile(found.outlier_score, OUTLIER_SHARE),
        **found.extra,
        **{f"prob_{name}": found.probs[:, j] for j, name in enumerate(rows.names)},
    }
    check_columns(rows, list(ours))
    given = rows.frame.iloc[rows.positions].reset_index(drop=True)
    table = pd.concat([pd.DataFrame({"row": rows.positions}), given, pd.DataFrame(ours)], axis=1)
    order = np.lexsort((found.quality, ~found.is_issue))
    return table.iloc[order].reset_index(drop=True)


def summary(rows: ReviewRows, found: Findings, table: pd.DataFrame) -> dict[str, Any]:
    """The review's numbers: counts per given label, the noise matrix, how often the probabilities' label agrees."""
    names = rows.names
    per_class = {
        name: {"rows": int((rows.labels == j).sum()), "issues": int((found.is_issue & (rows.labels == j)).sum())}
        for j, name in enumerate(names)
    }
    out: dict[str, Any] = {
        "rows": int(len(rows.frame)),
        "reviewed_rows": int(len(rows.labels)),
        "dropped": rows.dropped,
        "label_issues": int(found.is_issue.sum()),
        "conflicting_duplicates": int(table["conflicting_duplicate"].sum()),
        "ambiguous": int(table["ambiguous"].sum()),
        "outliers": int(table["outlier"].sum()),
        "outlier_source": found.outlier_source,
        "agreement_with_given_labels": round(float((found.suggested == rows.labels).mean()), 6),
        "per_class": per_class,
        "labels": names,
    }
    if found.noise_matrix is not None:
        out["noise_matrix"] = {"given_by_true": np.round(found.noise_matrix, 6).tolist(), "labels": names}
    return out
