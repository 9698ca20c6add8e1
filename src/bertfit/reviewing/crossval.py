"""Out-of-fold probabilities: k models, each fine-tuned (bertfit.train, bertfit's defaults) on k-1 stratified folds
and scoring the fold it never saw, so that every row gets probabilities from a model that did not train on it.

Outlier scores come from the same fold models: each one embeds its training rows and its held-out rows
(`embeddings.embed`), and each held-out row is scored by its mean distance to its 10 nearest training rows
(`issues.embedding_outliers`): low density relative to the data that model learned from. The embeddings of two fold
models live in different spaces, so no row is compared with another fold's rows; each fold's distances are divided
by the median distance among its own training rows (cleanlab's fit), which puts the folds' scores on one scale.
Measured on the tiny test model (3 folds of 400 rows, 8 off-topic rows planted, ten plantings), against scoring each
fold's held-out rows among themselves (no extra pass; 3.1 planted rows in the top 16 on average) this found 5.6;
against dividing by the held-out rows' own median, as many or more in 16 plantings of 16 (more in 10). Its cost, a
forward pass over a fold's training rows, was ~1% of the fold's training time there (0.03 s of 2 s); with E epochs
of forward and backward passes it is of the order of 1/(3E) of the training.

A finished fold leaves its probabilities and its rows' outlier scores in the work folder (fold-K.npz, keyed by the
rows and settings): a review that was stopped continues with the next fold. Each fold's model is removed once its
fold is scored (it is bertfit's own intermediate work, ~90 MB for the default model), with a log line, unless
`keep_models`.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from bertfit.config import RunConfig
from bertfit.errors import ConfigError, DataError
from bertfit.reviewing import issues
from bertfit.reviewing.rows import ReviewRows

logger = logging.getLogger(__name__)


def fold_splits(labels: np.ndarray, folds: int, seed: int, source: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (train, held-out) index pairs; every row is held out exactly once."""
    if folds < 2:
        raise ConfigError(f"folds must be at least 2 (got {folds}); try 5")
    counts = np.bincount(labels)
    if folds > len(labels) or counts.max() < folds:
        raise DataError(f"{source}: {len(labels)} usable rows cannot be cut into {folds} folds; pass --folds 2")
    small = int((counts[counts > 0] < folds).sum())
    if small:
        logger.warning("%s: %d classes have fewer rows than --folds %d; some folds hold none of them", source, small,
                       folds)  # fmt: skip
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


@dataclass
class OutOfFold:
    """Per usable row: probabilities, each from the fold model that did not train on the row, and the row's outlier
    score in that model's embeddings (None: a fold had too few rows, or was saved without them)."""

    probs: np.ndarray
    outliers: np.ndarray | None


def out_of_fold(
    rows: ReviewRows,
    cfg: RunConfig,
    work: Path,
    key: str,
    folds: int,
    validation: Any = None,
    progress: bool | None = None,
    cache_dir: str | Path | None = None,
    keep_models: bool = False,
) -> OutOfFold:
    """(usable rows, labels) probabilities and outlier scores, each row's from the fold model that did not train
    on it."""
    probs = np.zeros((len(rows.labels), len(rows.names)), dtype=np.float32)
    outliers, every_fold = np.zeros(len(rows.labels), dtype=np.float64), True
    for k, (train_idx, held) in enumerate(fold_splits(rows.labels, folds, cfg.train.seed, rows.source)):
        saved = work / f"fold-{k}.npz"
        found = _load_fold(saved, key, held)
        if found is not None:
            logger.info("fold %d/%d: scored by an earlier run of this review (%s)", k + 1, folds, saved)
        else:
            logger.info("fold %d/%d: training on %d rows, scoring the %d held out", k + 1, folds, len(train_idx),
                        len(held))  # fmt: skip
            found = _score_fold(rows, cfg, work / f"fold-{k}-model", train_idx, held, validation, progress, cache_dir)
            _save_fold(saved, key, held, *found)
            if not keep_models:
                shutil.rmtree(work / f"fold-{k}-model")
                logger.info("fold %d/%d: removed its model %s (scored; pass --keep-models to keep it)", k + 1, folds,
                            work / f"fold-{k}-model")  # fmt: skip
        probs[held] = found[0]
        if found[1] is not None:
            outliers[held] = found[1]
        elif every_fold:  # the folds' scores are of one kind or none: from the probabilities for every row
            every_fold = False
            logger.info("fold %d/%d: no outlier scores from its embeddings (%s); the review's outliers come from the "
                        "probabilities", k + 1, folds, _why_none(saved, len(train_idx)))  # fmt: skip
    return OutOfFold(probs, outliers if every_fold else None)


def _score_fold(
    rows: ReviewRows, cfg: RunConfig, model_dir: Path, train_idx: np.ndarray, held: np.ndarray, validation: Any,
    progress: bool | None, cache_dir: str | Path | None,
) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """Train the fold's model; its probabilities for the held-out rows, and their outlier scores."""
    from bertfit.prediction.classifier import Classifier
    from bertfit.training.run import train

    train(rows.subset(train_idx), model_dir, validation=validation, config=cfg, progress=progress,
          cache_dir=cache_dir, check=False)  # fmt: skip
    clf = Classifier.from_pretrained(model_dir, engine="torch")  # embeddings need the torch engine
    fold_probs = clf.predict_proba([rows.texts[i] for i in held], progress=bool(progress))
    return _on_schema(fold_probs, clf.labels, rows.names), fold_outliers(clf, rows, train_idx, held)


# Training rows a fold's outlier scores are measured against: a seeded sample beyond this many, so that the extra
# embedding pass and the neighbour search grow with the held-out rows only (all of a fold's training rows of a
# million-row review would be gigabytes of embeddings and a search against each of them).
REFERENCE_ROWS = 20_000


def fold_outliers(clf: Any, rows: ReviewRows, train_idx: np.ndarray, held: np.ndarray) -> np.ndarray | None:
    """The held-out rows' outlier scores among the fold's training rows (at most REFERENCE_ROWS of them, drawn at
    random), all embedded by the fold's model; None when the fold has too few training rows."""
    from bertfit.reviewing.embeddings import embed

    if len(train_idx) <= issues.OUTLIER_NEIGHBOURS:
        return None
    if len(train_idx) > REFERENCE_ROWS:
        train_idx = np.sort(np.random.default_rng(len(train_idx)).choice(train_idx, REFERENCE_ROWS, replace=False))
    tokens = clf.default_batch_tokens()
    reference = embed(clf.scorer, [rows.texts[i] for i in train_idx], tokens)
    return issues.embedding_outliers(reference, embed(clf.scorer, [rows.texts[i] for i in held], tokens))


def _why_none(saved: Path, train_rows: int) -> str:
    if train_rows <= issues.OUTLIER_NEIGHBOURS:
        return f"{train_rows} training rows; they need more than {issues.OUTLIER_NEIGHBOURS}"
    return f"{saved.name} was written by an earlier bertfit; remove it to train the fold again for them"


def _on_schema(probs: np.ndarray, fold_labels: list[str], names: list[str]) -> np.ndarray:
    """A fold model's columns placed on the whole data's labels (a class no training row of the fold had: 0)."""
    out = np.zeros((len(probs), len(names)), dtype=np.float32)
    for j, name in enumerate(fold_labels):
        out[:, names.index(name)] = probs[:, j]
    return out


def _load_fold(path: Path, key: str, held: np.ndarray) -> tuple[np.ndarray, np.ndarray | None] | None:
    """A finished fold's probabilities and outlier scores; None when it is not there or was made for other rows or
    settings. A file of an earlier bertfit has no outlier scores: its probabilities are reused (not trained again),
    and the review's outliers then come from the probabilities."""
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as saved:
        if str(saved["key"]) != key or not np.array_equal(saved["held"], held):
            return None
        return saved["probs"], saved["outliers"] if "outliers" in saved.files else None


def _save_fold(path: Path, key: str, held: np.ndarray, probs: np.ndarray, outliers: np.ndarray | None) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    extra = {} if outliers is None else {"outliers": outliers}
    np.savez(tmp, key=np.array(key), held=held, probs=probs, **extra)
    os.replace(tmp, path)
