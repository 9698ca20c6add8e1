"""tune(): an Optuna search over training settings (learning rate, epochs, batch size, warmup, weight decay,
scheduler, class weights), each trial a `bertfit.train` run scored on the validation data, resumable after a kill.

This module checks the request and needs neither optuna nor torch to refuse one; the search is tuning/search.py,
the study tuning/study.py, what is searched tuning/space.py and what is written tuning/report.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bertfit.config import RunConfig
from bertfit.data.paths import check_not_input
from bertfit.data.rows import DataSource
from bertfit.data.write import check_folder_writable
from bertfit.errors import DataError
from bertfit.tuning.report import BEST_MODEL, OUTPUTS, TuneResult
from bertfit.tuning.space import check_request, default_values, fixed_names, require_optuna, search_space

__all__ = ["TuneResult", "tune"]


def tune(
    data: DataSource,
    output_dir: str | Path = "tune",
    validation: DataSource | None = None,
    trials: int = 20,
    time_budget: str | float | None = None,
    keep_best: bool = False,
    config: RunConfig | None = None,
    fixed: Iterable[str] = (),
    ranges: Mapping[str, Sequence[Any]] | None = None,
    progress: bool | None = None,
    cache_dir: str | Path | None = None,
    check: bool = True,
    pruner: Any = None,
    sampler: Any = None,
    **overrides: Any,
) -> TuneResult:
    """Search training settings with Optuna, scoring each trial on `validation` (never on test data).

    Each trial trains with `bertfit.train` (same seed for all) and reports the validation metric after every epoch,
    so that a trial worse than the median of earlier ones at the same epoch stops early (pruned). The study is kept
    in OUT/tune.db: the same call again continues it, running only the trials still missing. The best trial's
    configuration is written to OUT/best.yaml (`bertfit train DATA --validation VAL --config OUT/best.yaml`
    trains it again), every trial to OUT/trials.csv, and a plot to OUT/trials.png.

    Args:
        data: labelled training data (a table file, a folder of shards, or a DataFrame).
        output_dir: the folder for tune.db, best.yaml, trials.csv, trials.png (and best-model).
        validation: labelled data every trial is scored on (required).
        trials: finished (complete or pruned) trials the study should hold; a continued study runs the rest.
        time_budget: no new trial starts after this long: '90s', '30m', '2h', or seconds.
        keep_best: keep the best trial's model as OUT/best-model (trial models are removed otherwise).
        config: a RunConfig (e.g. from `load_config`); keyword overrides such as `batch_size=16` apply on top.
            The settings tune searches (lr, epochs, batch_size, warmup, weight_decay, scheduler, class_weights,
            layer_decay, reinit_layers, label_smoothing) are searched unless given: in `overrides` or `fixed`, or
            in `config` with another value than the default.
        fixed: names of settings to hold at their value in `config` even where it is the default (the CLI passes
            the keys of --config and --set).
        ranges: other ranges for searched settings: (low, high) for lr, epochs and warmup; choices for the others,
            e.g. `{"lr": (1e-4, 1e-3), "batch_size": [16, 32]}`.
        progress: a bar over the trials (default: when stderr is a terminal); the trials' training shows none.
        cache_dir: where tokenized data is kept (as for `train`).
        check: run the data checks (`bertfit.check`) in the first trial.
        pruner, sampler: Optuna's, in place of MedianPruner (from epoch 2, after 5 complete trials) and TPE seeded
            from the seed setting.
        overrides: training settings, as for `bertfit.train`.
    """
    started = time.time()
    budget = check_request(validation, trials, time_budget)
    require_optuna()
    cfg = (config or RunConfig()).override(overrides).validate()
    out = Path(output_dir)
    _check_output(out, data, validation, keep_best)
    rows = _train_rows(data)
    space = search_space(cfg, fixed_names(cfg, overrides, fixed), rows, ranges)
    from bertfit.tuning.search import Tuning, run_search  # optuna (there, as checked above), torch, transformers

    tuning = Tuning(data, validation, cfg, space, out, cache_dir, keep_best, check, progress,
                    default_values(space, cfg.train, rows))  # fmt: skip
    return run_search(tuning, int(trials), budget, pruner, sampler, started)


def _check_output(out: Path, data: DataSource, validation: DataSource, keep_best: bool) -> None:
    """Refuse, before any work, an output folder that would write over an input or a folder that is not ours; then
    create it."""
    check_not_input(out, [data, validation], "--output folder", writes=OUTPUTS)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is a file; choose another --output folder")
    best = out / BEST_MODEL
    if keep_best and best.exists() and not (best / "bertfit.json").is_file():
        raise DataError(f"{best}: exists and is not a bertfit model, which --keep-best would replace; move it away")
    check_folder_writable(out)
    out.mkdir(exist_ok=True)


def _train_rows(data: DataSource) -> int | None:
    """The training rows, where that is cheap to know (a DataFrame, Parquet metadata, lines of CSV or JSON Lines)."""
    if isinstance(data, pd.DataFrame):
        return len(data)
    from bertfit.data.io import data_files, estimate_rows

    return estimate_rows(data_files(data))
