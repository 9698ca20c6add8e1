"""`bertfit review`: which labels of a labelled file are likely wrong (bertfit.review)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from bertfit.cli import common
from bertfit.cli.common import ConfigFile, Pair, guard, pair_settings, progress
from bertfit.cli.settings import SetOption, apply_sets, with_settings

SHOWN = 10  # likely errors printed; the table holds every row


@with_settings()
def review(
    data: Annotated[Path, typer.Argument(help="Labelled data: csv, tsv, jsonl, parquet, h5 or xlsx.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for label_issues.parquet, review.html.")],
    validation: Annotated[
        Path | None, typer.Option(help="Labelled rows each training picks its best epoch on [each splits its own].")
    ] = None,
    method: Annotated[
        str, typer.Option(help="crossval: k fine-tuning runs, out-of-fold scores; dynamics: one run [crossval].")
    ] = "crossval",
    folds: Annotated[int, typer.Option(help="crossval: number of folds [5].")] = 5,
    keep_models: Annotated[bool, typer.Option("--keep-models", help="Keep each fold's model.")] = False,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="Skip the data checks ('bertfit check') that run before the folds.")
    ] = False,
    settings: dict[str, Any] | None = None,
    pair: Pair = False,
    sets: SetOption = None,
    config: ConfigFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Find the rows whose label is likely wrong: out-of-fold probabilities from k fine-tuned models (or one run's
    training dynamics), then cleanlab's label issues, ranked in label_issues.parquet, summed up in review.html.

    Training settings (--epochs, --model, --text-col, ...) are train's; fewer epochs make a quicker review.
    """
    from bertfit.config import RunConfig, load_config

    def call() -> Any:
        from bertfit.reviewing.run import review as run_review

        base = apply_sets(load_config(config) if config else RunConfig(), sets)
        return run_review(data, output, validation, method=method, folds=folds, config=base, progress=progress(),
                          keep_models=keep_models, check=not no_check,
                          **pair_settings(settings or {}, pair))  # fmt: skip

    result = guard(call)
    if as_json:
        common.out.print_json(json.dumps(result.summary))
        return
    s = result.summary
    common.out.print(f"{s['label_issues']} of {s['reviewed_rows']} rows flagged as likely label errors "
                     f"({s['conflicting_duplicates']} repeat a text under another label, {s['ambiguous']} ambiguous)",
                     highlight=False)  # fmt: skip
    for r in result.table[result.table["is_label_issue"]].head(SHOWN).itertuples(index=False):
        common.out.print(f"  row {r.row}: {escape(str(r.given_label))} -> {escape(str(r.suggested_label))} "
                         f"(quality {r.label_quality:.3f})", highlight=False)  # fmt: skip
    common.out.print(f"table: {escape(str(result.output_dir / 'label_issues.parquet'))}  page: "
                     f"{escape(str(result.output_dir / 'review.html'))}", highlight=False)  # fmt: skip
