"""The evaluation report: `report.html` beside its PNGs, and the same numbers as a dict for metrics.json.

Plots: the normalised confusion matrix, per-class precision/recall/F1, a reliability diagram before and after
calibration, the error rate by text length in tokens, and the training curve when there is one. Tables: the most
confident errors and the least confident correct predictions.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bertfit.data.write import atomic_path
from bertfit.evaluation.calibration import Calibration, expected_calibration_error, reliability_table, rescale
from bertfit.evaluation.metrics import HEADLINE, MULTI_HEADLINE, classification_report
from bertfit.plots import new_figure
from bertfit.templates import render_html

REPORT_FILE = "report.html"
# The files a report writes into its folder (plus training_curve.png when given a curve), which must not be inputs.
REPORT_FILES = (REPORT_FILE, "confusion.png", "per_class.png", "reliability.png", "error_by_length.png")
EXAMPLES = 10  # rows in each of the two example tables
LENGTH_EDGES = (0, 8, 16, 32, 64, 128, 256, 512)  # token-length bins for the error rate
MAX_BARS = 40  # with more labels, the per-class plot shows the lowest-F1 ones (metrics.json has them all)
MAX_TICKS = 40  # with more labels, the confusion matrix is drawn without label names


@dataclass
class ScoredRows:
    """What a report is made of: the true label ids, the uncalibrated probabilities and token lengths per row, and
    a way to fetch the texts of a few rows (only the example tables need them)."""

    labels: np.ndarray  # (rows,) true label ids
    proba: np.ndarray  # (rows, n_labels) uncalibrated softmax
    lengths: np.ndarray  # (rows,) tokens, after truncation
    texts: Callable[[np.ndarray], list[str]]  # row indices -> texts
    names: list[str]
    logits: np.ndarray | None = None  # (rows, n_labels), when known: what a temperature is fitted on


def _literal_text(write: Callable) -> Callable:
    """Draw every text as written: a label such as '$x^$' is a name, not mathtext (which fails to parse, or draws
    something else). Tick labels are made while the figure is saved, so the whole write runs in this setting."""

    @functools.wraps(write)
    def literal(*args: Any, **kwargs: Any) -> Any:
        from matplotlib import rc_context

        with rc_context({"text.parse_math": False}):
            return write(*args, **kwargs)

    return literal


@_literal_text
def write_report(
    folder: str | Path,
    rows: ScoredRows,
    calibration: Calibration | None,
    title: str,
    curve_png: Path | None = None,
) -> dict[str, Any]:
    """Write report.html and its PNGs into `folder` (created); returns the report's numbers."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    temperature = calibration.temperature if calibration else 1.0
    calibrated = rescale(rows.proba, temperature)
    pred = rows.proba.argmax(axis=1)
    numbers = classification_report(rows.labels, pred, rows.names)
    numbers["calibration"] = _calibration_numbers(rows, calibrated, calibration)
    numbers["error_by_length"] = error_by_length(rows.labels, pred, rows.lengths)
    numbers["confident_errors"], numbers["unsure_correct"] = _examples(rows, calibrated, pred)
    pngs = {
        "confusion.png": _plot_confusion(numbers),
        "per_class.png": _plot_per_class(numbers),
        "reliability.png": _plot_reliability(numbers["calibration"]),
        "error_by_length.png": _plot_error_by_length(numbers["error_by_length"]),
    }
    return _write(folder, numbers, pngs, curve_png, lambda plots: _html(title, numbers, plots))


def _write(folder: Path, numbers: dict, pngs: dict, curve_png: Path | None, html_of: Callable) -> dict[str, Any]:
    """The PNGs, a copy of the training curve when there is one, then report.html (each written whole)."""
    for name, fig in pngs.items():
        with atomic_path(folder / name) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    if curve_png is not None and Path(curve_png).is_file():
        shutil.copyfile(curve_png, folder / "training_curve.png")
        pngs["training_curve.png"] = None
    with atomic_path(folder / REPORT_FILE) as tmp:
        tmp.write_text(html_of(list(pngs)), encoding="utf-8")
    numbers["report"] = {"html": REPORT_FILE, "plots": list(pngs)}
    return numbers


@_literal_text
def write_multilabel_report(
    folder: str | Path,
    rows: ScoredRows,
    thresholds: np.ndarray,
    title: str,
    curve_png: Path | None = None,
    held_out: np.ndarray | None = None,
) -> dict[str, Any]:
    """The multi-label report: metrics at the stored thresholds (or, with `held_out`, each row at thresholds tuned
    on other rows: see `multilabel.report`), per-label precision/recall/F1 with each label's threshold, and the rows
    with the most wrong labels. `rows.labels` is multi-hot, `rows.proba` sigmoid."""
    from bertfit.evaluation.multilabel import report

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    numbers = report(rows.labels, rows.proba, thresholds, rows.names, held_out)
    pred = rows.proba >= (thresholds[None, :] if held_out is None else held_out)
    wrong = (pred != rows.labels.astype(bool)).sum(axis=1)
    worst = np.argsort(-wrong, kind="stable")[: EXAMPLES if wrong.any() else 0]
    worst = worst[wrong[worst] > 0]
    texts = rows.texts(worst) if len(worst) else []
    names = np.asarray(rows.names, dtype=object)

    def joined(mask: np.ndarray) -> str:
        return ", ".join(names[mask]) or "(none)"

    numbers["worst_rows"] = [
        {"text": t, "label": joined(rows.labels[i].astype(bool)), "pred_label": joined(pred[i]), "wrong": int(wrong[i])}
        for t, i in zip(texts, worst)
    ]
    pngs = {"per_class.png": _plot_per_class(numbers)}
    return _write(folder, numbers, pngs, curve_png, lambda plots: _multilabel_html(title, numbers, plots))


def error_by_length(labels: np.ndarray, pred: np.ndarray, lengths: np.ndarray) -> list[dict[str, Any]]:
    """Rows and error rate per token-length bin (bins without rows are left out)."""
    edges = [e for e in LENGTH_EDGES if e < max(int(lengths.max(initial=0)), 1)] + [int(lengths.max(initial=0))]
    out = []
    for low, high in zip(edges[:-1], edges[1:]):
        mask = (lengths > low) & (lengths <= high)
        if mask.any():
            errors = float((pred[mask] != labels[mask]).mean())
            out.append({"tokens": f"{low + 1}-{high}", "rows": int(mask.sum()), "error_rate": errors})
    return out


def _calibration_numbers(rows: ScoredRows, calibrated: np.ndarray, calibration: Calibration | None) -> dict[str, Any]:
    before = expected_calibration_error(rows.proba, rows.labels)
    after = expected_calibration_error(calibrated, rows.labels)
    return {
        **(calibration.to_dict() if calibration else {"temperature": 1.0, "applied": False, "off": True}),
        "ece_before_here": before,
        "ece_after_here": after,
        "reliability_before": reliability_table(rows.proba, rows.labels),
        "reliability_after": reliability_table(calibrated, rows.labels),
    }


def _examples(rows: ScoredRows, calibrated: np.ndarray, pred: np.ndarray) -> tuple[list[dict], list[dict]]:
    score = calibrated.max(axis=1)
    wrong = np.flatnonzero(pred != rows.labels)
    right = np.flatnonzero(pred == rows.labels)
    picks = (wrong[np.argsort(-score[wrong], kind="stable")][:EXAMPLES], right[np.argsort(score[right])][:EXAMPLES])
    texts = rows.texts(np.concatenate(picks)) if sum(map(len, picks)) else []
    tables, start = [], 0
    for pick in picks:
        tables.append(
            [
                {
                    "text": texts[start + k],
                    "label": rows.names[rows.labels[i]],
                    "pred_label": rows.names[pred[i]],
                    "pred_score": float(score[i]),
                }  # fmt: skip
                for k, i in enumerate(pick)
            ]
        )
        start += len(pick)
    return tables[0], tables[1]


# -- plots (matplotlib Figure objects, no pyplot: nothing global is touched) -----------------------------------------


def _plot_confusion(numbers: dict[str, Any]) -> Any:
    names = numbers["labels"]
    matrix = np.asarray(numbers["confusion_matrix"], dtype=float)
    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(3 + 0.45 * len(names), 16)
    fig = new_figure(size + 1, size)
    ax = fig.subplots()
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if len(names) <= MAX_TICKS:
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
    if len(names) <= 20:
        for (i, j), value in np.ndenumerate(norm):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value > 0.5 else "black")
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title("Confusion matrix (each row sums to 1)")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def _plot_per_class(numbers: dict[str, Any]) -> Any:
    names = numbers["labels"]
    title = "Per-class precision, recall and F1"
    if len(names) > MAX_BARS:
        names = sorted(names, key=lambda n: numbers["per_class"][n]["f1"])[:MAX_BARS]
        title += f" (the {MAX_BARS} labels with the lowest F1 of {len(numbers['labels'])})"
    fig = new_figure(min(4 + 0.6 * len(names), 18), 4)
    ax = fig.subplots()
    x = np.arange(len(names))
    for k, metric in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (k - 1) * 0.27, [numbers["per_class"][n][metric] for n in names], width=0.27, label=metric)
    ax.set_xticks(x, names, rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(loc="lower right")
    return fig


def _plot_reliability(cal: dict[str, Any]) -> Any:
    fig = new_figure(10, 4.2)
    for ax, key, ece, when in zip(
        fig.subplots(1, 2),
        ("reliability_before", "reliability_after"),
        (cal["ece_before_here"], cal["ece_after_here"]),
        ("before calibration", f"after calibration (T = {cal['temperature']:.2f})"),
    ):
        table = cal[key]
        centres = [(b["low"] + b["high"]) / 2 for b in table]
        ax.bar(centres, [b["accuracy"] for b in table], width=1 / 15, edgecolor="black", alpha=0.7, label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ax.plot([b["confidence"] for b in table], [b["accuracy"] for b in table], "o", color="C3", ms=4)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence of the predicted label")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{when}: ECE {ece:.4f}")
        ax.legend(loc="upper left")
    return fig


def _plot_error_by_length(table: list[dict[str, Any]]) -> Any:
    fig = new_figure(7, 4)
    ax = fig.subplots()
    bars = ax.bar([b["tokens"] for b in table], [b["error_rate"] for b in table], color="C1")
    for bar, b in zip(bars, table):
        ax.annotate(f"n={b['rows']}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom")
    ax.set_xlabel("text length (tokens)")
    ax.set_ylabel("error rate")
    ax.set_title("Error rate by text length")
    return fig


# -- html (templates/report.html) ------------------------------------------------------------------------------


def _html(title: str, numbers: dict[str, Any], pngs: list[str]) -> str:
    how = _calibration_how(numbers["calibration"])
    return render_html("report.html", multi_label=False, title=title, numbers=numbers, plots=pngs,
                       headline=HEADLINE, calibration_how=how, when=_now())  # fmt: skip


def _multilabel_html(title: str, numbers: dict[str, Any], pngs: list[str]) -> str:
    return render_html("report.html", multi_label=True, title=title, numbers=numbers, plots=pngs,
                       multi_headline=MULTI_HEADLINE, when=_now())  # fmt: skip


def _calibration_how(cal: dict[str, Any]) -> str:
    """Why the temperature shown is what it is."""
    if cal.get("off"):
        return "none: calibration was turned off, or the model has no fitted temperature"
    if cal.get("reason"):  # why training applied it or kept 1 (calibration.fit_temperature)
        return cal["reason"] + ("" if cal["applied"] else "; scores are the plain softmax")
    if cal["applied"]:
        return "fitted on the validation split at the end of training"
    return "not applied: scores are the plain softmax"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
