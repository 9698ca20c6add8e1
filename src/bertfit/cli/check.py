"""`bertfit check`: the data checks that run before training, on their own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from bertfit.cli import common
from bertfit.cli.common import ConfigFile, Pair, guard, pair_settings, progress
from bertfit.cli.settings import with_settings

# The settings check shares with train; where the help differs from the field's, check's own.
SHARED = {
    "text_cols": None,
    "label_col": None,
    "label_map": None,
    "pair_col": None,
    "multi_label": None,
    "label_sep": None,
    "model": "Model whose tokenizer measures lengths: hub id or folder [all-MiniLM-L6-v2].",
    "max_length": "Max tokens per text, as in training [128].",
    "columns": None,
    "quoting": None,
    "encoding": None,
    "allow_pickle": "Read HDF5 files with pickled columns you trust.",
}


@with_settings(SHARED, {k: v for k, v in SHARED.items() if v})
def check(
    data: Annotated[Path, typer.Argument(help="Labelled training data: a file or a folder of shards.")],
    validation: Annotated[
        Path | None, typer.Option(help="Labelled validation data, also checked for leakage from DATA.")
    ] = None,
    test: Annotated[
        Path | None, typer.Option(help="Labelled test data, also checked for leakage from DATA and --validation.")
    ] = None,
    settings: dict[str, Any] | None = None,
    pair: Pair = False,
    min_class_rows: Annotated[int, typer.Option(help="Report classes with fewer training rows than this.")] = 10,
    config: ConfigFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check labelled data before training: leakage, duplicates, conflicting labels, classes, lengths, encoding.

    Errors (exit code 1) make a model or its scores untrustworthy: fewer than two classes, a label column that
    holds text, validation/test labels missing from train, no usable rows, more than 1% of validation or test
    rows whose exact text is also in train. Warnings cost quality: empty texts, missing labels, conflicting or
    many duplicates, smaller leakage, tiny classes, imbalance of 10x or more, shards of one label, more than 5%
    of texts cut at max length, replacement characters, mojibake, control characters. Info: columns, label
    distribution, token lengths (measured on a sample of at most 100,000 rows per split).
    """
    from bertfit.checks.checker import check as run_check
    from bertfit.config import RunConfig, load_config

    def call() -> Any:
        base = load_config(config) if config else RunConfig()
        overrides = pair_settings(settings or {}, pair)
        return run_check(data, validation, test, base, min_class_rows=min_class_rows, progress=progress(), **overrides)

    report = guard(call)
    if as_json:
        common.out.print_json(json.dumps(report.to_dict()))
    else:
        common.findings_table(report)
    if report.errors:
        raise typer.Exit(code=1)
