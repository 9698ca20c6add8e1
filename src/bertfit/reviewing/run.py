"""review(): which labels are likely wrong. Out-of-fold probabilities from k fine-tuned models (crossval), or one
run's training dynamics (dynamics), then cleanlab's label issues, written as a ranked table, a JSON summary and a
page: label_issues.parquet, review.json and review.html in the output folder."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bertfit.checks.checker import checked
from bertfit.config import RunConfig
from bertfit.data.paths import check_not_input
from bertfit.data.rows import DataSource
from bertfit.data.write import check_folder_writable, write_json, write_table
from bertfit.errors import ConfigError
from bertfit.reviewing import issues
from bertfit.reviewing.rows import ReviewRows, load_review_rows

logger = logging.getLogger(__name__)

METHODS = ("crossval", "dynamics")
TABLE, SUMMARY, PAGE = "label_issues.parquet", "review.json", "review.html"


@dataclass
class ReviewResult:
    """What review() wrote: the output folder, the ranked table (also as a DataFrame) and the summary numbers."""

    output_dir: Path
    table: pd.DataFrame
    summary: dict[str, Any]


def review(
    data: DataSource,
    output_dir: str | Path,
    validation: DataSource | None = None,
    method: str = "crossval",
    folds: int = 5,
    config: RunConfig | None = None,
    progress: bool | None = None,
    cache_dir: str | Path | None = None,
    keep_models: bool = False,
    check: bool = True,
    **overrides: Any,
) -> ReviewResult:
    """Find the rows of labelled data whose label is likely wrong.

    Args:
        data: a labelled table file (csv, tsv, jsonl, parquet, h5, xlsx) or a DataFrame, read as `train` reads it
            (text_col, label_col, label_map... as keyword settings or in `config`).
        output_dir: the folder to write label_issues.parquet, review.json and review.html into (with method
            crossval also folds/, each fold's out-of-fold probabilities, so a stopped review continues).
        validation: labelled rows each training run picks its best epoch on (else each splits off its own).
        method: "crossval" (k fine-tuning runs; every row scored by a model that never saw it) or "dynamics" (one
            run that scores every row after each epoch; its model is kept in output_dir/model).
        folds: k, for crossval.
        keep_models: keep each fold's model (output_dir/folds/fold-K-model) instead of removing it once scored.
        check: run `bertfit.check` on the data (and validation) once first, as `train` does: errors stop the review
            before any training, warnings are logged.
        overrides: training settings, as for `bertfit.train` (e.g. epochs=2).
    """
    started = time.time()
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)} (got '{method}')")
    cfg = (config or RunConfig()).override(overrides).validate()
    out = Path(output_dir)
    check_not_input(out / TABLE, [data, validation], "--output folder")
    check_folder_writable(out / TABLE if out.is_dir() else out)
    rows = load_review_rows(data, cfg.data)
    issues.check_columns(rows)
    # `bertfit.check` once, as train runs it (one class, labels that look like text, leakage into --validation stop
    # here; warnings are logged); the fold runs then skip it instead of checking the same rows k times
    if check:  # with a progress bar where train shows one: a check pass over a large file takes a while
        checked(data, validation, cfg, cache_dir, sys.stderr.isatty() if progress is None else bool(progress))
    out.mkdir(parents=True, exist_ok=True)
    if method == "crossval":
        found = _crossval(rows, cfg, out, folds, validation, progress, cache_dir, keep_models)
    else:
        found = _dynamics(rows, cfg, out, validation, progress, cache_dir)
    table = issues.issue_table(rows, found)
    summary = {"method": method, **issues.summary(rows, found, table), "seconds": round(time.time() - started, 1)}
    if method == "crossval":
        summary["folds"] = folds
    write_table(table, out / TABLE)
    write_json(summary, out / SUMMARY)
    from bertfit.reviewing.page import write_page

    write_page(out / PAGE, rows, table, summary)
    logger.info("%d of %d rows flagged as likely label errors; see %s", summary["label_issues"],
                summary["reviewed_rows"], out / PAGE)  # fmt: skip
    return ReviewResult(out, table, summary)


def _crossval(
    rows: ReviewRows, cfg: RunConfig, out: Path, folds: int, validation: Any, progress: Any, cache_dir: Any,
    keep_models: bool,
) -> issues.Findings:  # fmt: skip
    from bertfit.reviewing.crossval import out_of_fold

    work = out / "folds"
    work.mkdir(exist_ok=True)
    key = _identity(rows, cfg, folds, validation)
    found = out_of_fold(rows, cfg, work, key, folds, validation, progress, cache_dir, keep_models)
    return issues.crossval_findings(found.probs, rows.labels, found.outliers)


def _dynamics(
    rows: ReviewRows, cfg: RunConfig, out: Path, validation: Any, progress: Any, cache_dir: Any
) -> issues.Findings:
    """One training run with record_dynamics (`bertfit train --record-dynamics`: its model folder keeps
    dynamics.parquet); outliers from the final model's embeddings of every row."""
    from bertfit.training.run import train

    result = train(rows.subset(slice(None)), out / "model", validation=validation,
                   config=cfg.override({"record_dynamics": True}), progress=progress, cache_dir=cache_dir,
                   check=False)  # fmt: skip
    dyn = result.dynamics
    assert dyn is not None and len(dyn.aum) == len(rows.labels), "training scored other rows than the review's"
    mean_probs = dyn.mean_probs[:, [result.labels.index(name) for name in rows.names]]  # the review's label order
    return issues.dynamics_findings(mean_probs, rows.labels, dyn, _final_model_outliers(out / "model", rows))


def _final_model_outliers(model_dir: Path, rows: ReviewRows) -> np.ndarray | None:
    """Every row's outlier score among all rows, in the final model's embeddings (None: too few rows)."""
    from bertfit.prediction.classifier import Classifier
    from bertfit.reviewing.embeddings import embed

    clf = Classifier.from_pretrained(model_dir, engine="torch")
    scores = issues.embedding_outliers(embed(clf.scorer, rows.texts, clf.default_batch_tokens()))
    if scores is None:
        logger.info("%d rows are too few for outlier scores from embeddings; they come from the probabilities",
                    len(rows.labels))  # fmt: skip
    return scores


def _identity(rows: ReviewRows, cfg: RunConfig, folds: int, validation: Any) -> str:
    """What a fold's saved probabilities depend on: the rows, their labels, the folds and the training settings."""
    h = hashlib.sha256()
    h.update(json.dumps([folds, rows.names, cfg.to_dict(), str(validation) if validation is not None else None],
                        sort_keys=True, default=str).encode())  # fmt: skip
    for text in rows.texts:
        h.update(json.dumps(text).encode())
    h.update(rows.labels.tobytes())
    return h.hexdigest()
