"""`bertfit predict`: label every row of a file, locally or over Ray; resumable."""

from __future__ import annotations

import contextlib
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
    refuse,
)


def predict(
    model_dir: ModelDir,
    input_file: Annotated[Path, typer.Argument(help="Table with a text column, or a folder of shards.")],
    output_file: Annotated[
        Path, typer.Argument(help="Where to write; the format follows the extension; no extension: a folder.")
    ],
    text_col: TextCol = None,
    probs: Annotated[bool, typer.Option("--probs", help="Add a prob_<label> column per label.")] = False,
    dtype: Dtype = "auto",
    batch_tokens: BatchTokens = None,
    batch_size: BatchSize = None,
    max_length: Annotated[int | None, typer.Option(help="Tokens kept per text [as in training].")] = None,
    window: Annotated[
        int | None, typer.Option(help="Rows read, sorted and committed together [50000; ray: 10000 per call].")
    ] = None,
    compile: Annotated[
        bool, typer.Option("--compile", help="torch.compile the model (~30 s; pays off on big inputs).")
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            help="auto | torch | onnx | openvino | ray (auto, also 'local': the folder's own engine; a "
            "torch folder may run on OpenVINO where measured faster and as accurate)."
        ),
    ] = "auto",
    address: Annotated[str | None, typer.Option(help="Ray cluster address [start a local one].")] = None,
    num_workers: Annotated[int | None, typer.Option(help="Ray: model replicas [one per CPU core or GPU].")] = None,
    gpus_per_worker: Annotated[float, typer.Option(help="Ray: GPUs per replica [0].")] = 0.0,
    no_calibration: NoCalibration = False,
    allow_pickle: AllowPickle = False,
    long: LongOverride = None,
    stride: StrideOverride = None,
    aggregate: AggregateOverride = None,
    threshold: Threshold = None,
    columns: Columns = None,
    quoting: Quoting = None,
    encoding: Encoding = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Label every row of a file; the output keeps all input columns and rows, plus pred_label and pred_score
    (multi-label models: pred_labels and a prob_<label> column per label). Long texts give one row each.

    Rerunning the same command after a crash continues where it stopped.
    """
    _check_engine(engine, allow_pickle)
    common_args = dict(
        text_cols=text_col or None, probs=probs, dtype=dtype, batch_tokens=batch_tokens, batch_size=batch_size,
        max_length=max_length, progress=progress(), compile=compile, calibration=not no_calibration, long=long,
        stride=stride, aggregate=aggregate, threshold=threshold,
    )  # fmt: skip
    ray = dict(address=address, num_workers=num_workers, gpus_per_worker=gpus_per_worker)
    with contextlib.ExitStack() as held:
        # Locked before an engine is imported (torch alone takes seconds): a second run into this output refuses at
        # once. The engine checks again and takes the same lock again, a no-op in the same thread.
        from bertfit.data.paths import check_not_input, model_files
        from bertfit.prediction.parts import OutputLock

        guard(lambda: check_not_input(output_file, [input_file, *model_files(model_dir)]))
        guard(lambda: held.enter_context(OutputLock(output_file)))
        read = (columns, quoting, encoding, allow_pickle)  # pickle: not with ray, as refused above
        summary = guard(
            lambda: _run(engine, model_dir, input_file, output_file, window, read_options(*read), common_args, ray)
        )
    _render(summary, as_json)


PREDICT_ENGINES = ("auto", "torch", "onnx", "openvino", "ray", "local")


def _check_engine(engine: str, allow_pickle: bool) -> None:
    if engine not in PREDICT_ENGINES:
        refuse(f"--engine must be one of {', '.join(PREDICT_ENGINES[:-1])} (got '{engine}')")
    if engine == "ray" and allow_pickle:
        refuse("--allow-pickle works with the engines in this process only (not ray); convert the model to safetensors")


def _run(
    engine: str, model_dir: Path, input_file: Path, output_file: Path, window: int | None, read: Any,
    args: dict[str, Any], ray: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """One engine's predict call: Ray Data over a cluster (its actors load the folder's own engine), or
    predict_file here with the engine asked for."""
    from bertfit.data.paths import require_model_folder

    require_model_folder(model_dir)  # before an engine is imported: torch and transformers take seconds
    if engine == "ray":
        from bertfit.prediction.ray_engine import predict_with_ray

        return predict_with_ray(model_dir, input_file, output_file, **args, **ray, window=window, read=read)
    from bertfit.prediction.classifier import DEFAULT_WINDOW, predict_file

    window = window or DEFAULT_WINDOW
    pickle = read.allow_pickle
    return predict_file(model_dir, input_file, output_file, **args, window=window, allow_pickle=pickle, read=read,
                        engine=engine)  # fmt: skip


def _render(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        common.out.print_json(json.dumps(summary))
        return
    extra = [f"{summary['rows_per_s']:.0f} rows/s"] if "rows_per_s" in summary else []
    extra += [f"{summary[k]} {k.replace('_', ' ')}" for k in ("empty_text", "truncated") if summary.get(k)]
    if summary.get("resumed_rows"):
        extra.append(f"resumed after {summary['resumed_rows']} rows")
    out = f"wrote {summary['rows']} rows to {escape(str(summary['output']))} ({'; '.join(extra)})"
    common.out.print(out, highlight=False)
