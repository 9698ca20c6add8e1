"""`bertfit train`: options (one per config field, and --set) -> RunConfig -> training.run.train -> summary."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from bertfit.cli import common
from bertfit.cli.common import CacheDir, ConfigFile, Pair, guard, pair_settings, progress
from bertfit.cli.settings import SetOption, apply_sets, with_settings

INTERRUPTED = "interrupted; run the same command again to continue from the last checkpoint"
SUMMARY_METRICS = ("accuracy", "macro_f1", "micro_f1", "mcc", "samples_f1")


@with_settings()
def train(
    train_file: Annotated[
        Path, typer.Argument(help="Labelled data: csv, tsv, jsonl, parquet, h5 or xlsx, or a folder of shards.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")],
    validation: Annotated[Path | None, typer.Option(help="Labelled validation file (else split off).")] = None,
    settings: dict[str, Any] | None = None,
    pair: Pair = False,
    sets: SetOption = None,
    resume: Annotated[
        bool | None,
        typer.Option(
            "--resume/--restart",
            help="Continue the interrupted run into --output, or start over [continue when possible].",
        ),
    ] = None,
    cache_dir: CacheDir = None,
    config: ConfigFile = None,
    overwrite: Annotated[
        bool,
        typer.Option(help="No effect (old scripts): a bertfit model or empty folder is replaced, any other refused."),
    ] = False,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="Skip the data checks ('bertfit check') that run before training.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Fine-tune a model on labelled data and write a Hugging Face model folder.

    The data is checked first (see 'bertfit check'): errors stop the run, warnings are shown and saved with the model.
    """

    def call() -> Any:
        base = _base_config(output, config, sets)
        _inputs_found(train_file, validation)
        from bertfit.training.run import train as run_train  # torch and transformers: seconds to import

        return run_train(
            train_file, output, validation, config=base, overwrite=overwrite, progress=progress(),
            cache_dir=cache_dir, resume=resume, check=not no_check, **pair_settings(settings or {}, pair),
        )  # fmt: skip

    result = guard(call, INTERRUPTED)
    if os.environ.get("RANK", "0") != "0":  # under torchrun / accelerate launch the first process reports
        return
    _report(result, as_json)


def _base_config(output: Path, config: Path | None, sets: list[str] | None) -> Any:
    """The config file's settings with --set applied, once --output is known to be writable (not after training)."""
    from bertfit.config import RunConfig, load_config
    from bertfit.data.paths import check_not_input
    from bertfit.data.write import check_folder_writable

    check_not_input(output, [config], "--output folder")  # the library checks the data and model it reads
    check_folder_writable(output)
    return apply_sets(load_config(config) if config else RunConfig(), sets)


def _inputs_found(*inputs: Path | None) -> None:
    """A missing data file is named at once, not after torch and transformers have been imported."""
    from bertfit.data.io import data_files

    for path in inputs:
        if path is not None:
            data_files(path)


def _report(result: Any, as_json: bool) -> None:
    summary = {
        "model_dir": str(result.model_dir),
        "train_rows": result.train_rows,
        "val_rows": result.val_rows,
        "train_seconds": round(result.train_seconds, 1),
        "resumed_from_step": result.resumed_from_step,
        "labels": result.labels,
        **{k: result.metrics[k] for k in SUMMARY_METRICS if k in result.metrics},
    }
    if as_json:
        common.out.print_json(json.dumps(summary))
        return
    common.metrics_table(result.metrics, f"validation ({result.val_rows} rows)")
    where = escape(str(result.model_dir))
    common.out.print(f"model: {where}  ({result.train_rows} training rows, {result.train_seconds:.0f}s)")
