"""Metrics (scikit-learn), the evaluate() entry point, and the model card written beside a trained model."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_recall_fscore_support,
)

from bertfit.config import DataConfig
from bertfit.data.io import ReadOptions, check_folder_writable, check_writable, write_json
from bertfit.data.paths import check_not_input, model_files
from bertfit.data.rows import DataSource, load_labelled
from bertfit.errors import DataError
from bertfit.evaluation.calibration import MIN_ERRORS, MIN_GAIN, MIN_ROWS, T_RANGE

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
            from bertfit.evaluation.multilabel import headline, sigmoid

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
    long: str | None = None,
    stride: int | None = None,
    aggregate: str | None = None,
    threshold: float | None = None,
    read: ReadOptions | None = None,
) -> dict[str, Any]:
    """Score a trained model on labelled data; returns (and optionally writes as JSON) the full report.

    Multi-label models are scored at their stored per-label thresholds (or `threshold` for every label): micro,
    macro, samples and weighted F1, subset accuracy, Hamming loss and per-label precision/recall/F1. Pair models
    read the pair column they were trained with; `long`, `stride` and `aggregate` override the model's own.

    Args:
        report: a folder to write report.html and its plots into (see `bertfit.evaluation.report`).
        calibration: score with the model's fitted temperature (the expected calibration error is reported both
            with and without it either way).
        allow_pickle: load a model folder that has only a pickle checkpoint (pytorch_model.bin), or an HDF5 data
            file with pickled columns; unpickling can run code hidden in the file, so only for files you trust.
        read: how to read the data file (a headerless CSV/TSV's columns, quoting, encoding); see `io.ReadOptions`.
    """
    from bertfit.evaluation.calibration import Calibration, expected_calibration_error, rescale
    from bertfit.evaluation.report import REPORT_FILES
    from bertfit.prediction.classifier import Classifier

    inputs = [data, *model_files(model_dir)]
    if output is not None:
        check_not_input(output, inputs, "--output file")
        check_writable(output, suffixes=(".json",))
    if report is not None:
        check_not_input(report, inputs, "--report folder", writes=REPORT_FILES)
        _check_report_folder(Path(report))
    clf = Classifier.from_pretrained(
        model_dir, dtype=dtype, calibration=calibration, allow_pickle=allow_pickle, long=long, stride=stride,
        aggregate=aggregate, threshold=threshold,
    )  # fmt: skip
    clf.check_batching(batch_tokens, batch_size)  # bad settings fail before the data is read
    cfg = DataConfig(
        text_cols=text_cols or clf.text_cols,
        label_col=label_col or clf.meta.get("data", {}).get("label_col", "label"),
        label_map=clf.schema.raw_map or None,
        pair_col=clf.pair_col,
        multi_label=clf.schema.multi_label,  # an empty label cell is then a row with no labels, not a missing one
    )
    if read is not None:
        cfg.columns = list(read.columns) if read.columns else None
        cfg.quoting, cfg.encoding = read.quoting, read.encoding
    cfg.allow_pickle = allow_pickle
    labelled, _ = load_labelled(data, cfg, schema=clf.schema, role="evaluation")
    temperature, clf.temperature = clf.temperature, 1.0  # score once, uncalibrated; rescaling is exact
    raw = clf.predict_proba(labelled.texts, batch_tokens=batch_tokens, batch_size=batch_size, progress=progress)
    if clf.schema.multi_label:
        results = _multilabel_results(clf, labelled, raw, report, model_dir)
        if output is not None:
            write_json(results, output)
        return results
    results = classification_report(labelled.labels, raw.argmax(-1), clf.schema.names)
    results["ece"] = expected_calibration_error(rescale(raw, temperature), labelled.labels)
    results["ece_uncalibrated"] = expected_calibration_error(raw, labelled.labels)
    results["temperature"] = temperature
    results["dropped"] = labelled.dropped
    if report is not None:
        from bertfit.data.rows import shown_text
        from bertfit.evaluation.report import ScoredRows, write_report

        encoded = clf.encoder(list(labelled.texts))
        lengths = encoded.lengths  # tokens per text; with sliding windows, summed over its windows
        if encoded.docs is not None:
            lengths = np.bincount(encoded.docs, weights=lengths, minlength=len(labelled.texts)).astype(np.int64)
        texts = [shown_text(t) for t in labelled.texts]
        rows = ScoredRows(labelled.labels, raw, lengths, lambda idx: [texts[i] for i in idx], clf.schema.names)
        fitted = Calibration(**clf.meta["calibration"]) if clf.meta.get("calibration") else None
        numbers = write_report(report, rows, fitted if calibration else None, f"Evaluation of {Path(model_dir).name}")
        results.update({k: numbers[k] for k in ("calibration", "error_by_length", "confident_errors", "report")})
        results["unsure_correct"] = numbers["unsure_correct"]
    if output is not None:
        write_json(results, output)
    return results


def _multilabel_results(
    clf: Any, labelled: Any, proba: np.ndarray, report: str | Path | None, model_dir: str | Path
) -> dict[str, Any]:
    from bertfit.evaluation.multilabel import report as multilabel_report

    results = multilabel_report(labelled.labels, proba, clf.thresholds, clf.schema.names)
    results["dropped"] = labelled.dropped
    if report is not None:
        from bertfit.data.rows import shown_text
        from bertfit.evaluation.report import ScoredRows, write_multilabel_report

        texts = [shown_text(t) for t in labelled.texts]
        rows = ScoredRows(labelled.labels, proba, np.zeros(len(texts), np.int64), lambda idx: [texts[i] for i in idx],
                          clf.schema.names)  # fmt: skip
        numbers = write_multilabel_report(report, rows, clf.thresholds, f"Evaluation of {Path(model_dir).name}")
        results.update({k: numbers[k] for k in ("worst_rows", "report")})
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
    front = {
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "base_model": meta.get("base_model"),
        "tags": ["bertfit", "text-classification"],
    }
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip("\n"),  # valid YAML whatever the names
        "---",
        "",
        "# Text classifier fine-tuned with bertfit",
        "",
        f"Base model: {_markdown(str(meta.get('base_model')))}. Labels ({len(names)}): "
        f"{', '.join(_markdown(n) for n in names)}.",
        f"Trained on {meta.get('train_rows')} rows, validated on {metrics.get('n')} rows; text from column(s) "
        f"{', '.join(_markdown(c) for c in data.get('text_cols', []))}, at most {data.get('max_length')} tokens.",
        *_task_lines(meta),
        "",
        "## Validation metrics",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {k} | {metrics[k]:.4f} |" for k in (*HEADLINE, "samples_f1", "hamming_loss") if k in metrics),
        "",
        *_per_class_lines(metrics),
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


def _task_lines(meta: dict[str, Any]) -> list[str]:
    """What kind of task: multi-label with its thresholds, sentence pairs, long-document handling."""
    data, labels = meta.get("data", {}), meta.get("labels", {})
    lines = []
    if labels.get("problem_type") == "multi_label_classification":
        how = (meta.get("thresholds") or {}).get("how", "global")
        lines.append(
            "Multi-label: one sigmoid per label; a label is predicted when its score reaches its threshold "
            f"({'tuned per label on the validation rows' if how == 'tuned' else '0.5 for every label'}). With the "
            "transformers pipeline use `top_k=None` and apply the thresholds in bertfit.json yourself."
        )
        if how == "tuned":
            lines.append(
                "The validation metrics below are cross-fitted: each half of the validation rows is predicted at "
                "thresholds tuned on the other half, so they do not use the rows the thresholds were tuned on. The "
                "stored thresholds (shown per label) are tuned on all validation rows."
            )
    if data.get("pair_col"):
        lines.append(f"Sentence pairs: the second text comes from column {_markdown(data['pair_col'])} (segment B).")
    if data.get("long", "truncate") == "sliding":
        lines.append(
            f"Long texts: windows of {data.get('max_length')} tokens sharing {data.get('stride')}, their logits "
            f"aggregated by {data.get('aggregate')} (bertfit predict does this; the pipeline truncates)."
        )
    elif data.get("long") == "head-tail":
        lines.append("Long texts: the first quarter and the last three quarters of the tokens are kept (head-tail).")
    return ["", *lines] if lines else []


def _per_class_lines(metrics: dict[str, Any]) -> list[str]:
    per_class = metrics.get("per_class", {})
    multi = any("threshold" in c for c in per_class.values())
    head = "| label | precision | recall | f1 | support |" + (" threshold |" if multi else "")
    rows = [
        f"| {_markdown(name)} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |"
        + (f" {c['threshold']:.2f} |" if multi else "")
        for name, c in per_class.items()
    ]
    return [head, "|---|---|---|---|---|" + ("---|" if multi else ""), *rows]


def _markdown(text: str) -> str:
    """Text from the data (label and column names) shown as written in Markdown: characters that inline syntax or a
    table reads ('|', '$', '*', '[', '<', ...) are backslash-escaped, line breaks become spaces."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", re.sub(r"[\r\n]+", " ", text))


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|$~&])")


def _calibration_lines(calibration: dict[str, Any] | None) -> list[str]:
    if not calibration:
        return []
    reason = _markdown(calibration.get("reason") or "no reason recorded")
    if calibration.get("applied"):
        state = (
            f"Temperature {calibration['temperature']:.3f} ({reason}). `bertfit predict` divides the logits by it; "
            "the transformers pipeline does not (plain softmax scores). On validation rows it was not fitted on: "
            f"log-loss {calibration['nll_before']:.4f} -> {calibration['nll_after']:.4f}, expected calibration "
            f"error {calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}."
        )
    else:
        state = (
            f"Temperature 1 ({reason}): scores are the plain softmax. Expected calibration error on the validation "
            f"rows: {calibration['ece_before']:.4f}."
        )
    return [
        "## Calibration",
        "",
        state,
        "",
        f"Rule: a temperature is fitted only when validation has at least {MIN_ROWS} rows and {MIN_ERRORS} "
        f"misclassified ones, is searched between {T_RANGE[0]} and {T_RANGE[1]}, and is applied only if, fitted on "
        f"either half of the validation rows, it lowers the log-loss of the other half by {MIN_GAIN:.0%} or more; "
        "otherwise it is 1.",
        "",
        "See report/report.html for the plots.",
        "",
    ]
