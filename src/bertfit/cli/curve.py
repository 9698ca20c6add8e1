"""`bertfit learning-curve`: train on growing subsets, fit a power law, forecast what more labels buy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from bertfit.cli import common
from bertfit.cli.common import ConfigFile, guard, progress, refuse
from bertfit.cli.settings import SetOption, apply_sets, with_settings

INTERRUPTED = "interrupted; curve.json was not written (the runs start over when run again)"


@with_settings()
def learning_curve(
    data_file: Annotated[Path, typer.Argument(help="Labelled training data (csv, parquet...), or a folder of shards.")],
    validation: Annotated[Path, typer.Option(help="Labelled data every run is scored on.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for curve.json and curve.png [learning-curve].")
    ] = Path("learning-curve"),
    fractions: Annotated[
        str, typer.Option(help="Shares of the training rows, comma-separated [0.125,0.25,0.5,1].")
    ] = "0.125,0.25,0.5,1",
    seeds: Annotated[int, typer.Option(help="Seeds per fraction below 0.5 (the others run once) [3].")] = 3,
    metric: Annotated[str, typer.Option(help="What the curve fits: macro_f1 | accuracy [macro_f1].")] = "macro_f1",
    keep_models: Annotated[bool, typer.Option(help="Keep each run's model under OUTPUT/runs/.")] = False,
    settings: dict[str, Any] | None = None,
    sets: SetOption = None,
    config: ConfigFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print curve.json's content.")] = False,
) -> None:
    """Train on growing, nested, stratified subsets of the data (several seeds at the small ones), score each on
    --validation, fit macro-F1 = a - b * n^(-c) and forecast it at twice the data, with a band. Every training
    setting (--epochs, --model...) applies to each run."""
    shares = _fractions(fractions)

    def call() -> Any:
        from bertfit.config import RunConfig, load_config
        from bertfit.data.io import data_files

        base = apply_sets(load_config(config) if config else RunConfig(), sets)
        data_files(data_file), data_files(validation)  # missing inputs are named before torch is imported
        from bertfit.reviewing.learning import learning_curve as run_curve

        overrides = {k: v for k, v in (settings or {}).items() if v is not None}
        return run_curve(data_file, validation, output, shares, seeds, metric, config=base, progress=progress(),
                         keep_models=keep_models, **overrides)  # fmt: skip

    result = guard(call, INTERRUPTED)
    if as_json:
        common.out.print_json(json.dumps(result))
        return
    _render(result, output)


def _fractions(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        refuse(f"--fractions takes shares separated by commas, e.g. 0.125,0.25,0.5,1 (got '{text}')")
        return []


def _render(result: dict[str, Any], output: Path) -> None:
    metric = result["metric"]
    table = Table(title=f"learning curve ({metric} on the validation data)")
    for name in ("fraction", "seed", "train rows", "macro-F1", "accuracy"):
        table.add_column(name, justify="right")
    for p in result["points"]:
        table.add_row(f"{p['fraction']:g}", str(p["seed"]), str(p["train_rows"]), f"{p['macro_f1']:.4f}",
                      f"{p['accuracy']:.4f}")  # fmt: skip
    common.out.print(table)
    fit = result["fit"]
    if fit:
        common.out.print(f"fit: {metric} = {fit['a']:.4f} - {fit['b']:.4g} * n^(-{fit['c']:.3f})", highlight=False)
    common.out.print(result["answer"], highlight=False)
    if result.get("warning"):
        common.out.print(f"warning: {escape(result['warning'])}", highlight=False)
    common.out.print(f"wrote {escape(str(output / 'curve.json'))} and {escape(str(output / 'curve.png'))}")
