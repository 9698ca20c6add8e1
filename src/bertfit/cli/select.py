"""`bertfit select`: the unlabelled rows most worth labelling next, written with every input column."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from bertfit.cli import common
from bertfit.cli.common import (
    AllowPickle,
    BatchSize,
    BatchTokens,
    Columns,
    Dtype,
    Encoding,
    EngineOption,
    ModelDir,
    Quoting,
    TextCol,
    guard,
    progress,
    read_options,
)

INTERRUPTED = "interrupted; nothing was written; run the same command again to continue the scoring"


def select(
    model_dir: ModelDir,
    pool: Annotated[Path, typer.Argument(help="Unlabelled table (a text column), or a folder of shards.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the picked rows (csv, parquet...).")],
    n: Annotated[int, typer.Option("--n", "-n", help="How many rows to pick [500].")] = 500,
    strategy: Annotated[
        str,
        typer.Option(
            help="margin (smallest top-2 gap) | entropy | random | diverse (uncertain and spread out) [margin]."
        ),
    ] = "margin",
    seed: Annotated[int, typer.Option(help="Random seed for --strategy random [0].")] = 0,
    diverse_factor: Annotated[
        int, typer.Option(help="diverse: spread the picks over the N x this most uncertain rows [10].")
    ] = 10,
    text_col: TextCol = None,
    dtype: Dtype = "auto",
    engine: EngineOption = "auto",
    batch_tokens: BatchTokens = None,
    batch_size: BatchSize = None,
    allow_pickle: AllowPickle = False,
    columns: Columns = None,
    quoting: Quoting = None,
    encoding: Encoding = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Pick the N rows of an unlabelled pool most worth labelling next, most useful first. The output keeps every
    input column as given, plus row (0-based position in the pool), the strategy's score, pred_label, pred_score
    and a prob_<label> column per label. Rerunning the same command after a crash continues the scoring."""
    with contextlib.ExitStack() as held:
        # Locked before torch is imported: a second run into this output refuses at once.
        from bertfit.data.paths import check_not_input, model_files, require_model_folder
        from bertfit.prediction.parts import OutputLock

        guard(lambda: check_not_input(output, [pool, *model_files(model_dir)]))
        guard(lambda: held.enter_context(OutputLock(output, "bertfit select")))
        guard(lambda: require_model_folder(model_dir))
        from bertfit.reviewing.select import select as run_select

        read = read_options(columns, quoting, encoding, allow_pickle)
        summary = guard(
            lambda: run_select(
                model_dir, pool, output, n, strategy, seed, diverse_factor, text_col or None, dtype, batch_tokens,
                batch_size, progress(), read, engine, allow_pickle,
            ),
            INTERRUPTED,
        )  # fmt: skip
    _render(summary, as_json)


def _render(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        common.out.print_json(json.dumps(summary))
        return
    extra = f"; {summary['empty_text']} rows with empty text skipped" if summary["empty_text"] else ""
    common.out.print(
        f"wrote {summary['picked']} of {summary['usable_rows']} usable rows, picked by {summary['strategy']}, to "
        f"{escape(summary['output'])}{extra}",
        highlight=False,
    )
