"""Metrics (scikit-learn), the evaluate() entry point, and the model card written beside a trained model."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_recall_fscore_support,
)

from .checks import DataSource, load_labelled
from .config import DataConfig
from .errors import DataError
from .io import check_folder_writable, check_writable, write_json

logger = logging.getLogger(__name__)

HEADLINE = ("accuracy", "macro_f1", "micro_f1", "weighted_f1", "mcc")


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


def trainer_metrics(n_labels: int) -> Callable[[Any], dict[str, float]]:
    """compute_metrics for transformers.Trainer: logits -> headline metrics."""

    def compute(eval_pred: Any) -> dict[str, float]:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        return headline_metrics(eval_pred.label_ids, np.asarray(logits).argmax(-1), n_labels)

    return compute


def evaluate(
    model_dir: str | Path,
    data: DataSource,
    text_cols: list[str] | None = None,
    label_col: str | None = None,
    output: str | Path | None = None,
    batch_tokens: int | None = None,
    batch_size: int | None = None,
    dtype: str = "auto",
    progress: bool = False,
    report: str | Path | None = None,
    calibration: bool = True,
    allow_pickle: bool = False,
) -> dict[str, Any]:
    """Score a trained model on labelled data; returns (and optionally writes as JSON) the full report.

    Args:
        report: a folder to write report.html and its plots into (see `bertfit.report`).
        calibration: score with the model's fitted temperature (the expected calibration error is reported both
            with and without it either way).
        allow_pickle: load a model folder that has only a pickle checkpoint (pytorch_model.bin); unpickling can
            run code hidden in the file, so only for files from a source you trust.
    """
    from .calibration import Calibration, expected_calibration_error, rescale
    from .inference import Classifier

    if output is not None:
        check_writable(output, suffixes=(".json",))
    if report is not None:
        _check_report_folder(Path(report))
    clf = Classifier.from_pretrained(model_dir, dtype=dtype, calibration=calibration, allow_pickle=allow_pickle)
    clf.check_batching(batch_tokens, batch_size)  # bad settings fail before the data is read
    cfg = DataConfig(
        text_cols=text_cols or clf.text_cols,
        label_col=label_col or clf.meta.get("data", {}).get("label_col", "label"),
        label_map=clf.schema.raw_map or None,
    )
    labelled, _ = load_labelled(data, cfg, schema=clf.schema, role="evaluation")
    temperature, clf.temperature = clf.temperature, 1.0  # score once, uncalibrated; rescaling is exact
    raw = clf.predict_proba(labelled.texts, batch_tokens=batch_tokens, batch_size=batch_size, progress=progress)
    results = classification_report(labelled.labels, raw.argmax(-1), clf.schema.names)
    results["ece"] = expected_calibration_error(rescale(raw, temperature), labelled.labels)
    results["ece_uncalibrated"] = expected_calibration_error(raw, labelled.labels)
    results["temperature"] = temperature
    results["dropped"] = labelled.dropped
    if report is not None:
        from .report import ScoredRows, write_report

        texts = list(labelled.texts)
        rows = ScoredRows(labelled.labels, raw, clf.encoder(texts).lengths, lambda idx: [texts[i] for i in idx],
                          clf.schema.names)  # fmt: skip
        fitted = Calibration(**clf.meta["calibration"]) if clf.meta.get("calibration") else None
        numbers = write_report(report, rows, fitted if calibration else None, f"Evaluation of {Path(model_dir).name}")
        results.update({k: numbers[k] for k in ("calibration", "error_by_length", "confident_errors", "report")})
        results["unsure_correct"] = numbers["unsure_correct"]
    if output is not None:
        write_json(results, output)
    return results


def _check_report_folder(folder: Path) -> None:
    """A report folder may exist (its files are replaced) or be new in a writable folder; a file there is an error."""
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: is a file; --report takes a folder to write report.html and its plots into")
    check_folder_writable(folder / "report.html" if folder.is_dir() else folder)


def model_card(meta: dict[str, Any], metrics: dict[str, Any]) -> str:
    """README.md for a trained model folder: what it is, how it was trained, how well it did."""
    data, cfg = meta.get("data", {}), meta.get("config", {}).get("train", {})
    names = metrics.get("labels", [])
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        f"base_model: {meta.get('base_model')}",
        "tags: [bertfit, text-classification]",
        "---",
        "",
        "# Text classifier fine-tuned with bertfit",
        "",
        f"Base model: `{meta.get('base_model')}`. Labels ({len(names)}): {', '.join(f'`{n}`' for n in names)}.",
        f"Trained on {meta.get('train_rows')} rows, validated on {metrics.get('n')} rows; text from column(s) "
        f"{', '.join(data.get('text_cols', []))}, at most {data.get('max_length')} tokens.",
        "",
        "## Validation metrics",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {k} | {metrics[k]:.4f} |" for k in HEADLINE if k in metrics),
        "",
        "| label | precision | recall | f1 | support |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |"
            for name, c in metrics.get("per_class", {}).items()
        ),
        "",
        *_calibration_lines(meta.get("calibration")),
        "## Training",
        "",
        f"Epochs {cfg.get('epochs')}, batch size {cfg.get('batch_size')}, learning rate {cfg.get('lr')} "
        f"({cfg.get('scheduler')} decay, warmup {cfg.get('warmup')}), weight decay {cfg.get('weight_decay')}, "
        f"precision {meta.get('precision')}, seed {cfg.get('seed')}; the best epoch by validation "
        f"{cfg.get('best_metric')} was kept. Versions: {meta.get('versions')}.",
        "",
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        'clf = pipeline("text-classification", model="path/to/this/folder")',
        "```",
        "",
        "or `bertfit predict path/to/this/folder input.csv output.csv`.",
        "",
    ]
    return "\n".join(lines)


def _calibration_lines(calibration: dict[str, Any] | None) -> list[str]:
    if not calibration:
        return []
    state = "applied by bertfit" if calibration.get("applied") else "not applied (it did not lower the error)"
    return [
        "## Calibration",
        "",
        f"Temperature {calibration['temperature']:.3f}, fitted on the validation rows, {state}: expected "
        f"calibration error {calibration['ece_before']:.4f} before, {calibration['ece_after']:.4f} after. "
        "`bertfit predict` divides the logits by it; the transformers pipeline does not (plain softmax scores).",
        "",
        "See report/report.html for the plots.",
        "",
    ]
