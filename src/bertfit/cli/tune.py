"""`bertfit tune`: train's options, --config and --set -> RunConfig (what they name is held fixed) ->
tuning.run.tune -> the best trial and the counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bertfit.cli import common
from bertfit.cli.common import CacheDir, ConfigFile, Pair, guard, pair_settings, progress
from bertfit.cli.settings import SetOption, apply_sets, with_settings
from bertfit.config import config_names

INTERRUPTED = "interrupted; run the same command again to continue the study (finished trials are kept in tune.db)"


@with_settings()
def tune(
    data_file: Annotated[
        Path,
        typer.Argument(help="Labelled training data: csv, tsv, jsonl, parquet, h5 or xlsx, or a folder of shards."),
    ],
    validation: Annotated[
        Path | None, typer.Option(help="Labelled data every trial is scored on (required; never the test split).")
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for tune.db, best.yaml, trials.csv, trials.png [tune].")
    ] = Path("tune"),
    trials: Annotated[
        int,
        typer.Option(help="Finished (complete or pruned) trials the study should hold; a rerun runs the rest [20]."),
    ] = 20,
    time_budget: Annotated[
        str | None, typer.Option(help="No new trial starts after this long: 90s, 30m, 2h [no limit].")
    ] = None,
    keep_best: Annotated[
        bool,
        typer.Option("--keep-best", help="Keep the best trial's model in OUTPUT/best-model [trial models removed]."),
    ] = False,
    settings: dict[str, Any] | None = None,
    pair: Pair = False,
    sets: SetOption = None,
    config: ConfigFile = None,
    cache_dir: CacheDir = None,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="Skip the data checks ('bertfit check') in the first trial.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Search training settings with Optuna, each trial scored on --validation: learning rate, epochs, batch size,
    warmup, weight decay, scheduler and class weights, trials pruned by epoch. A setting given as an option, with
    --set or in --config is held fixed. The study is kept in OUTPUT/tune.db: the same command again continues it.
    Writes OUTPUT/best.yaml ('bertfit train DATA --validation FILE --config OUTPUT/best.yaml' trains it again),
    trials.csv and trials.png (needs pip install 'bertfit[tune]')."""

    def call() -> Any:
        from bertfit.config import RunConfig, load_config
        from bertfit.data.io import data_files
        from bertfit.tuning.space import check_request, require_optuna

        check_request(validation, trials, time_budget)
        require_optuna()
        base = apply_sets(load_config(config) if config else RunConfig(), sets)
        data_files(data_file), data_files(validation)  # missing inputs are named before torch is imported
        from bertfit.tuning.run import tune as run_tune

        return run_tune(data_file, output, validation, trials=trials, time_budget=time_budget, keep_best=keep_best,
                        config=base, fixed=_named(config, sets), progress=progress(), cache_dir=cache_dir,
                        check=not no_check, **pair_settings(settings or {}, pair))  # fmt: skip

    result = guard(call, INTERRUPTED)
    if as_json:
        common.out.print_json(json.dumps(result.summary()))
        return
    _render(result)


def _named(config: Path | None, sets: list[str] | None) -> list[str]:
    """The settings that --config and --set name: held fixed, even where the value given is the default."""
    names = [item.partition("=")[0].strip() for item in sets or ()]
    return names + (config_names(config) if config is not None else [])


def _render(result: Any) -> None:
    s = result.summary()
    counts = s["trials"]
    tally = f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed trials"
    if s["best_value"] is None:
        common.out.print(f"no trial completed ({tally}, {s['seconds']:.0f}s)", highlight=False)
    else:
        table = Table(title=Text(f"best trial: {s['best_trial']}", style="table.title"))
        table.add_column("setting")
        table.add_column("value", justify="right")
        for name, value in s["best_params"].items():
            table.add_row(name, f"{value:.3g}" if isinstance(value, float) else str(value))
        common.out.print(table)
        common.out.print(f"best {s['metric']} {s['best_value']:.4f} on the validation data (trial {s['best_trial']});"
                         f" {tally}; {s['seconds']:.0f}s", highlight=False)  # fmt: skip
    wrote = [s[k] for k in ("best_config", "trials_csv", "trials_png", "best_model") if s[k]]
    common.out.print(f"wrote {escape(', '.join(wrote))}", highlight=False)
