"""Out-of-fold probabilities: k models, each fine-tuned (bertfit.train, bertfit's defaults) on k-1 stratified folds
and scoring the fold it never saw, so that every row gets probabilities from a model that did not train on it.

A finished fold leaves its probabilities in the work folder (fold-K.npz, keyed by the rows and settings): a review
that was stopped continues with the next fold. Each fold's model is removed once its fold is scored (it is bertfit's
own intermediate work, ~90 MB for the default model), with a log line, unless `keep_models`.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from bertfit.config import RunConfig
from bertfit.errors import ConfigError, DataError
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
) -> np.ndarray:
    """(usable rows, labels) probabilities, each row's from the fold model that did not train on it."""
    from bertfit.prediction.classifier import Classifier
    from bertfit.training.run import train

    probs = np.zeros((len(rows.labels), len(rows.names)), dtype=np.float32)
    for k, (train_idx, held) in enumerate(fold_splits(rows.labels, folds, cfg.train.seed, rows.source)):
        saved = work / f"fold-{k}.npz"
        if _load_fold(saved, key, held, probs):
            logger.info("fold %d/%d: scored by an earlier run of this review (%s)", k + 1, folds, saved)
            continue
        logger.info("fold %d/%d: training on %d rows, scoring the %d held out", k + 1, folds, len(train_idx), len(held))
        model_dir = work / f"fold-{k}-model"
        train(rows.subset(train_idx), model_dir, validation=validation, config=cfg, progress=progress,
              cache_dir=cache_dir, check=False)  # fmt: skip
        clf = Classifier.from_pretrained(model_dir)
        fold_probs = clf.predict_proba([rows.texts[i] for i in held], progress=bool(progress))
        probs[held] = _on_schema(fold_probs, clf.labels, rows.names)
        _save_fold(saved, key, held, probs[held])
        if not keep_models:
            shutil.rmtree(model_dir)
            logger.info("fold %d/%d: removed its model %s (scored; pass --keep-models to keep it)", k + 1, folds,
                        model_dir)  # fmt: skip
    return probs


def _on_schema(probs: np.ndarray, fold_labels: list[str], names: list[str]) -> np.ndarray:
    """A fold model's columns placed on the whole data's labels (a class no training row of the fold had: 0)."""
    out = np.zeros((len(probs), len(names)), dtype=np.float32)
    for j, name in enumerate(fold_labels):
        out[:, names.index(name)] = probs[:, j]
    return out


def _load_fold(path: Path, key: str, held: np.ndarray, probs: np.ndarray) -> bool:
    if not path.is_file():
        return False
    with np.load(path, allow_pickle=False) as saved:
        if str(saved["key"]) != key or not np.array_equal(saved["held"], held):
            return False
        probs[held] = saved["probs"]
    return True


def _save_fold(path: Path, key: str, held: np.ndarray, probs: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, key=np.array(key), held=held, probs=probs)
    os.replace(tmp, path)
