"""`bertfit export`: a model folder -> an ONNX Runtime or OpenVINO engine folder; int8 behind an accuracy gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from bertfit.cli import common
from bertfit.cli.common import Columns, Encoding, ModelDir, Quoting, TextCol, guard, read_options


def export(
    model_dir: ModelDir,
    output: Annotated[Path, typer.Option("--output", "-o", help="The export folder to write (new, or an export).")],
    format: Annotated[str, typer.Option("--format", help="onnx | openvino.")],
    int8: Annotated[
        bool, typer.Option("--int8", help="Quantize to int8, checked against the fp32 model (the accuracy gate).")
    ] = False,
    calibration: Annotated[
        Path | None, typer.Option(help="openvino --int8: texts to calibrate on [the gate's rows].")
    ] = None,
    validate: Annotated[
        Path | None, typer.Option(help="Labelled rows for the accuracy gate [the validation sample kept by training].")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Write an export that fails the gate (or is unchecked).")
    ] = False,
    text_col: TextCol = None,
    label_col: Annotated[str | None, typer.Option(help="--validate: label column [as in training].")] = None,
    columns: Columns = None,
    quoting: Quoting = None,
    encoding: Encoding = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was recorded as JSON.")] = False,
) -> None:
    """Write MODEL_DIR's model as an ONNX Runtime (model.onnx) or OpenVINO (openvino_model.xml) engine folder,
    beside its labels, calibration, thresholds and tokenizer: 'bertfit predict OUTPUT' runs it with that engine.

    With --int8 the export is checked on labelled rows against the fp32 model and refused (nothing written) if it
    agrees on fewer than 99.5% of them or loses more than 0.5 point of macro-F1, unless --force.
    """
    from bertfit.exporting.export import export as run_export

    record = guard(
        lambda: run_export(
            model_dir, output, format, int8=int8, calibration=calibration, validate=validate, force=force,
            text_cols=text_col or None, label_col=label_col, read=read_options(columns, quoting, encoding),
        )
    )  # fmt: skip
    if as_json:
        common.out.print_json(json.dumps(record))
        return
    _render(record, output)


def _render(record: dict[str, Any], output: Path) -> None:
    kind = f"{record['format']} {'int8' if record['int8'] else 'fp32'} ({record['method']})"
    common.out.print(f"wrote {kind} to {escape(str(output))}", highlight=False)
    gate = record.get("gate")
    if gate is None:
        common.out.print("accuracy gate: not checked (no labelled rows)", highlight=False)
        return
    before, after = gate["fp32"], gate["export"]
    line = (
        f"accuracy gate on {gate['rows']} rows: agreement {gate['agreement']:.4f}; macro-F1 {before['macro_f1']:.4f} "
        f"-> {after['macro_f1']:.4f}; accuracy {before['accuracy']:.4f} -> {after['accuracy']:.4f}"
    )
    if "ece" in after:
        line += f"; ECE {before['ece']:.4f} -> {after['ece']:.4f}"
    common.out.print(line + ("" if gate["passed"] else " (FAILED, written with --force)"), highlight=False)
