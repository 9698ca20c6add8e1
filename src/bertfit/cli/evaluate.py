"""`bertfit evaluate`: a trained model's scores on labelled data, as a table, JSON or an HTML report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from bertfit.cli import common
from bertfit.cli.common import (
    AggregateOverride,
    AllowPickle,
    BatchSize,
    BatchTokens,
    Columns,
    Dtype,
    Encoding,
    EngineOption,
    LongOverride,
    ModelDir,
    NoCalibration,
    Quoting,
    StrideOverride,
    TextCol,
    Threshold,
    guard,
    progress,
    read_options,
)


def evaluate(
    model_dir: ModelDir,
    data_file: Annotated[Path, typer.Argument(help="Labelled data to score.")],
    text_col: TextCol = None,
    label_col: Annotated[str | None, typer.Option(help="Label column [as in training].")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the full report as JSON.")] = None,
    batch_tokens: BatchTokens = None,
    batch_size: BatchSize = None,
    dtype: Dtype = "auto",
    engine: EngineOption = "auto",
    report_dir: Annotated[
        Path | None, typer.Option("--report", help="Write report.html with its plots into this folder.")
    ] = None,
    no_calibration: NoCalibration = False,
    allow_pickle: AllowPickle = False,
    long: LongOverride = None,
    stride: StrideOverride = None,
    aggregate: AggregateOverride = None,
    threshold: Threshold = None,
    columns: Columns = None,
    quoting: Quoting = None,
    encoding: Encoding = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Score a trained model on labelled data: accuracy, F1, MCC, calibration error, per-class report, confusion
    matrix; with --report, an HTML report with plots."""
    from bertfit.evaluation.evaluate import evaluate as run_evaluate

    report = guard(
        lambda: run_evaluate(
            model_dir, data_file, text_col or None, label_col, output, batch_tokens, batch_size, dtype, progress(),
            report=report_dir, calibration=not no_calibration, allow_pickle=allow_pickle, long=long, stride=stride,
            aggregate=aggregate, threshold=threshold, read=read_options(columns, quoting, encoding, allow_pickle),
            engine=engine,
        )
    )  # fmt: skip
    if as_json:
        common.out.print_json(json.dumps(report))
        return
    _render(report, data_file, output, report_dir)


def _render(report: dict[str, Any], data_file: Path, output: Path | None, report_dir: Path | None) -> None:
    common.metrics_table(report, f"{data_file} ({report['n']} rows)")
    if "ece" in report:
        common.out.print(
            f"expected calibration error {report['ece']:.4f} (uncalibrated {report['ece_uncalibrated']:.4f}, "
            f"temperature {report['temperature']:.3f})",
            highlight=False,
        )
    if output:
        common.out.print(f"metrics: {escape(str(output))}")
    if report_dir:
        common.out.print(f"report: {escape(str(report_dir / 'report.html'))}")
