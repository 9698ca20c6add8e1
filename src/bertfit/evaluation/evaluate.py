"""The evaluate() entry point: score a trained model on labelled data, optionally with an HTML report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from bertfit.config import DataConfig
from bertfit.data.io import ReadOptions
from bertfit.data.paths import check_not_input, model_files
from bertfit.data.rows import DataSource, load_labelled, shown_text
from bertfit.data.write import check_folder_writable, check_writable, write_json
from bertfit.errors import DataError
from bertfit.evaluation.calibration import Calibration, expected_calibration_error, rescale
from bertfit.evaluation.metrics import classification_report
from bertfit.evaluation.multilabel import report as multilabel_report
from bertfit.evaluation.report import REPORT_FILES, ScoredRows, write_multilabel_report, write_report

logger = logging.getLogger(__name__)


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
    engine: str = "auto",
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
        engine: what runs the model: the folder's own (auto), torch, onnx or openvino (`Classifier.from_pretrained`).
    """
    from bertfit.prediction.classifier import Classifier

    _check_outputs(model_dir, data, output, report)
    clf = Classifier.from_pretrained(
        model_dir, dtype=dtype, calibration=calibration, allow_pickle=allow_pickle, long=long, stride=stride,
        aggregate=aggregate, threshold=threshold, engine=engine,
    )  # fmt: skip
    clf.check_batching(batch_tokens, batch_size)  # bad settings fail before the data is read
    cfg = data_config(clf, text_cols, label_col, read, allow_pickle)
    labelled, _ = load_labelled(data, cfg, schema=clf.schema, role="evaluation")
    temperature, clf.temperature = clf.temperature, 1.0  # score once, uncalibrated; rescaling is exact
    raw = clf.predict_proba(labelled.texts, batch_tokens=batch_tokens, batch_size=batch_size, progress=progress)
    title = f"Evaluation of {Path(model_dir).name}"
    if clf.schema.multi_label:
        results = _multilabel_results(clf, labelled, raw, report, title)
    else:
        fitted = clf.meta.get("calibration") if calibration else None
        results = _single_label_results(clf, labelled, raw, temperature, report, fitted, title)
    if output is not None:
        write_json(results, output)
    return results


def _check_outputs(
    model_dir: str | Path, data: DataSource, output: str | Path | None, report: str | Path | None
) -> None:
    """The JSON file and the report folder can be written and are none of the inputs (before anything loads)."""
    inputs = [data, *model_files(model_dir)]
    if output is not None:
        check_not_input(output, inputs, "--output file")
        check_writable(output, suffixes=(".json",))
    if report is not None:
        check_not_input(report, inputs, "--report folder", writes=REPORT_FILES)
        _check_report_folder(Path(report))


def data_config(
    clf: Any, text_cols: list[str] | None, label_col: str | None, read: ReadOptions | None, allow_pickle: bool
) -> DataConfig:
    """How to read the evaluation data: the model's own columns and label map unless others are given."""
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
    return cfg


def _single_label_results(
    clf: Any,
    labelled: Any,
    raw: np.ndarray,
    temperature: float,
    report: str | Path | None,
    calibration: dict[str, Any] | None,
    title: str,
) -> dict[str, Any]:
    """Metrics of the uncalibrated scores, the calibration error with and without `temperature`, and the report
    (scored with the model's fitted `calibration`, when given) written into the folder `report`."""
    results = classification_report(labelled.labels, raw.argmax(-1), clf.schema.names)
    results["ece"] = expected_calibration_error(rescale(raw, temperature), labelled.labels)
    results["ece_uncalibrated"] = expected_calibration_error(raw, labelled.labels)
    results["temperature"] = temperature
    results["dropped"] = labelled.dropped
    if report is not None:
        rows = ScoredRows(labelled.labels, raw, _token_lengths(clf, labelled.texts), _texts(labelled.texts),
                          clf.schema.names)  # fmt: skip
        numbers = write_report(report, rows, Calibration(**calibration) if calibration else None, title)
        results.update({k: numbers[k] for k in ("calibration", "error_by_length", "confident_errors", "report")})
        results["unsure_correct"] = numbers["unsure_correct"]
    return results


def _multilabel_results(
    clf: Any, labelled: Any, proba: np.ndarray, report: str | Path | None, title: str
) -> dict[str, Any]:
    """Metrics at the model's thresholds, and the multi-label report written into the folder `report`."""
    results = multilabel_report(labelled.labels, proba, clf.thresholds, clf.schema.names)
    results["dropped"] = labelled.dropped
    if report is not None:
        rows = ScoredRows(labelled.labels, proba, np.zeros(len(labelled.texts), np.int64), _texts(labelled.texts),
                          clf.schema.names)  # fmt: skip
        numbers = write_multilabel_report(report, rows, clf.thresholds, title)
        results.update({k: numbers[k] for k in ("worst_rows", "report")})
    return results


def _token_lengths(clf: Any, texts: Any) -> np.ndarray:
    """Tokens per text; with sliding windows, summed over its windows."""
    encoded = clf.encoder(list(texts))
    if encoded.docs is None:
        return encoded.lengths
    return np.bincount(encoded.docs, weights=encoded.lengths, minlength=len(texts)).astype(np.int64)


def _texts(texts: Any) -> Any:
    """Row indices -> the texts as a report shows them."""
    shown = [shown_text(t) for t in texts]
    return lambda idx: [shown[i] for i in idx]


def _check_report_folder(folder: Path) -> None:
    """A report folder may exist (its files are replaced) or be new in a writable folder; a file there is an error."""
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: is a file; --report takes a folder to write report.html and its plots into")
    check_folder_writable(folder / "report.html" if folder.is_dir() else folder)
