"""After fitting: the best model scored on the validation rows, calibrated (or its multi-label thresholds tuned),
and staged with its report, model card and bertfit.json in the work folder, ready to publish."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from transformers import EvalPrediction, PreTrainedTokenizerBase, Trainer

from bertfit.data.cache import TokenizedRows
from bertfit.data.sample import write_validation_sample
from bertfit.data.write import default_file_mode, write_json
from bertfit.evaluation import multilabel
from bertfit.evaluation.calibration import Calibration, fit_temperature, softmax
from bertfit.evaluation.card import model_card
from bertfit.evaluation.metrics import classification_report
from bertfit.evaluation.report import ScoredRows, write_multilabel_report, write_report
from bertfit.labels import LabelSchema
from bertfit.modeling import BERTFIT_FILE, library_versions
from bertfit.prediction.decoder import sigmoid
from bertfit.tokenization import aggregate_windows
from bertfit.training.extensions import Metrics
from bertfit.training.job import Job
from bertfit.training.sampling import LengthOrder
from bertfit.training.tracking import plot_training_curve
from bertfit.training.trainer import LOG_FILE, TENSORBOARD_DIR

CURVE_FILE = "training_curve.png"
REPORT_DIR = "report"
CHECKS_FILE = "checks.json"

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """The best model's validation scores and what was fitted on them."""

    rows: ScoredRows
    metrics: dict[str, Any]
    calibration: Calibration | None = None  # single-label
    thresholds: np.ndarray | None = None  # multi-label, one per label
    held_out: np.ndarray | None = None  # multi-label cross-fitting: the thresholds each row was scored with


def score(
    trainer: Trainer,
    val_ds: TokenizedRows,
    tokenizer: PreTrainedTokenizerBase,
    schema: LabelSchema,
    job: Job,
) -> Outcome:
    """Score the validation rows, then calibrate (single-label) or tune thresholds (multi-label); the metrics hold
    the validation report, a caller's compute_metrics values and the per-epoch evaluations."""
    cfg = job.cfg
    rows, pred = scored_validation(trainer, val_ds, tokenizer, schema, cfg.data.aggregate)
    if schema.multi_label:
        thresholds, held_out = tuned_thresholds(cfg.train.thresholds, rows)
        metrics = multilabel.report(rows.labels, rows.proba, thresholds, schema.names, held_out)
        outcome = Outcome(rows, metrics, thresholds=thresholds, held_out=held_out)
    else:
        calibration = fit_temperature(rows.logits, rows.labels)
        logger.info("calibration: temperature %.3f, %s", calibration.temperature, calibration.reason)
        metrics = classification_report(rows.labels, rows.proba.argmax(-1), schema.names)
        outcome = Outcome(rows, metrics, calibration=calibration)
    _add_callers_metrics(metrics, job.extensions.compute_metrics, pred)
    metrics["history"] = [e for e in trainer.state.log_history if "eval_loss" in e]
    return outcome


def _add_callers_metrics(metrics: dict[str, Any], compute: Metrics | None, pred: EvalPrediction) -> None:
    """compute_metrics of the caller, on the best model's validation predictions (as Trainer saw them: windows,
    not documents, with --long window); bertfit's own values win a name both give."""
    if compute is not None:
        for key, value in compute(pred).items():
            metrics.setdefault(key, value)


def scored_validation(
    trainer: Trainer,
    val_ds: TokenizedRows,
    tokenizer: PreTrainedTokenizerBase,
    schema: LabelSchema,
    aggregate: str = "mean",
) -> tuple[ScoredRows, EvalPrediction]:
    """The best model's logits on the validation rows, with what the report needs (lengths, texts), and Trainer's
    predictions as they came.

    Trainer visits validation rows longest first (LengthOrder; under DDP the gathered batches keep that order), so
    the labels come from Trainer's output; texts are shown only when its labels match that order, as decoded tokens.
    Sliding windows are aggregated into one row per document.
    """
    pred = trainer.predict(val_ds)
    logits = np.asarray(pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions, np.float64)
    labels = np.asarray(pred.label_ids)
    order = LengthOrder(val_ds.lengths).order
    known = len(order) == len(labels) and np.array_equal(val_ds.labels[order], labels)
    lengths = val_ds.lengths[order] if known else np.zeros(len(labels), dtype=np.int32)
    if known and val_ds.docs is not None:  # rows are windows: one row per document, shown by its first window
        _, first, index = np.unique(val_ds.docs[order], return_index=True, return_inverse=True)
        logits, labels = aggregate_windows(logits, index, len(first), aggregate), labels[first]
        lengths = np.bincount(index, weights=lengths).astype(np.int64)
        order = order[first]
    labels = labels.astype(np.int64)

    def texts(idx: np.ndarray) -> list[str]:
        if not known:
            return ["(text not available)"] * len(idx)
        ids = [val_ds[int(order[i])]["input_ids"] for i in idx]
        return tokenizer.batch_decode(ids, skip_special_tokens=True)

    proba = sigmoid(logits) if schema.multi_label else softmax(logits)
    rows = ScoredRows(labels, proba, lengths, texts, list(schema.names), logits)
    return rows, EvalPrediction(predictions=pred.predictions, label_ids=pred.label_ids)


def tuned_thresholds(how: str, rows: ScoredRows) -> tuple[np.ndarray, np.ndarray | None]:
    """Multi-label decision thresholds: tuned per label on the validation rows, with each row's thresholds tuned on
    the other half of the rows to score it with (cross-fitting); or 0.5 for every label (nothing tuned)."""
    if how == "global":
        return np.full(len(rows.names), multilabel.DEFAULT_THRESHOLD), None
    thresholds, held_out = multilabel.cross_fitted_thresholds(rows.labels, rows.proba)
    logger.info("thresholds tuned on %d validation rows: %s", len(rows.labels),
                ", ".join(f"{n} {t:.2f}" for n, t in zip(rows.names, thresholds)))  # fmt: skip
    return thresholds, held_out


def model_meta(
    job: Job,
    schema: LabelSchema,
    max_length: int,
    precision: str,
    train_ds: TokenizedRows,
    val_ds: TokenizedRows,
    train_metrics: dict[str, Any],
) -> dict[str, Any]:
    """bertfit.json's contents, less what scoring and checking add (see stage)."""
    cfg = job.cfg
    meta = {
        "format": 1,
        "base_model": job.base_name,
        "labels": schema.to_dict(),
        "data": {
            "text_cols": cfg.data.text_cols,
            "label_col": cfg.data.label_col,
            "max_length": max_length,
            "pair_col": cfg.data.pair_col,
            "long": cfg.data.long,
            "stride": cfg.data.window_stride,
            "aggregate": cfg.data.aggregate,
        },
        "config": cfg.to_dict(),
        "precision": precision,
        "train_rows": len(train_ds),
        "val_rows": len(val_ds),
        "dropped": {k: v for k, v in train_ds.data.dropped.items() if v},
        "train_runtime_s": train_metrics.get("train_runtime"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
    }
    if job.extensions.trainer_args:  # a caller's TrainingArguments values, as resolved for the run's identity
        meta["trainer_args"] = job.extensions.identity()
    return meta


def stage(
    work: Path,
    meta: dict[str, Any],
    outcome: Outcome,
    checks: dict[str, Any] | None,
    how: str,
    val_ds: TokenizedRows | None = None,
) -> None:
    """Complete the model folder Trainer saved in work/model: calibration or thresholds (`how` they were chosen)
    and the data checks go into bertfit.json, beside the report, the model card, the logs and a sample of the
    validation rows (`val_ds`; for the accuracy gate of `bertfit export --int8`)."""
    meta["calibration"] = outcome.calibration.to_dict() if outcome.calibration else None
    if val_ds is not None and len(val_ds):
        meta["validation_sample"] = write_validation_sample(work / "model", val_ds, meta["config"]["train"]["seed"])
    if outcome.thresholds is not None:
        meta["thresholds"] = {"how": how, "values": dict(zip(outcome.rows.names, outcome.thresholds.tolist()))}
    meta["checks"] = {k: checks[k] for k in ("errors", "warnings")} if checks else None
    if checks:
        write_json(checks, work / "model" / CHECKS_FILE)
    _save(work, meta, outcome)


def _save(work: Path, meta: dict[str, Any], outcome: Outcome) -> None:
    """bertfit's files beside the weights Trainer saved in work/model: metrics, card, logs, curve, the validation
    report (report/report.html with its plots), bertfit.json."""
    folder, metrics = work / "model", outcome.metrics
    (folder / "training_args.bin").unlink(missing_ok=True)  # a pickle; bertfit.json records the settings
    if (work / LOG_FILE).is_file():
        shutil.copyfile(work / LOG_FILE, folder / LOG_FILE)
        plot_training_curve(folder / LOG_FILE, folder / CURVE_FILE, meta["config"]["train"]["best_metric"])
    if outcome.thresholds is not None:
        numbers = write_multilabel_report(
            folder / REPORT_DIR, outcome.rows, outcome.thresholds, "Validation report", folder / CURVE_FILE,
            outcome.held_out,
        )  # fmt: skip
    else:
        numbers = write_report(
            folder / REPORT_DIR, outcome.rows, outcome.calibration, "Validation report", folder / CURVE_FILE
        )
    metrics.update({k: v for k, v in numbers.items() if k not in metrics})
    metrics["report"] = {**numbers["report"], "folder": REPORT_DIR}
    write_json(metrics, folder / "metrics.json")
    (folder / "README.md").write_text(model_card(meta, metrics), encoding="utf-8")
    if (work / TENSORBOARD_DIR).is_dir():
        shutil.copytree(work / TENSORBOARD_DIR, folder / TENSORBOARD_DIR)
    mode = default_file_mode()  # safetensors writes the weights private (0600); a model folder is meant to be shared
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(mode)
    write_json(meta, folder / BERTFIT_FILE)  # written last: its presence marks a complete model folder
