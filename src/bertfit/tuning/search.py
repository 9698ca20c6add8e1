"""The search of `bertfit tune`: the trials still missing from the study run one after another, each a
`bertfit.train` run into OUT/trials/trial-N, the tool's own scratch, which is removed after the trial with a log
line (with keep_best, a trial better than every earlier one moves its model to OUT/best-model instead).

After every trial trials.csv, trials.png and best.yaml are written again, so a kill loses only the trial it stops.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from tqdm.auto import tqdm
from transformers import TrainerCallback

from bertfit.config import RunConfig
from bertfit.data.cache import input_identity
from bertfit.data.io import data_files
from bertfit.data.locks import work_folder
from bertfit.data.rows import DataSource
from bertfit.training.checkpoints import run_identity
from bertfit.training.run import TrainResult, train
from bertfit.tuning.report import (
    BEST_MODEL,
    BEST_YAML,
    DB_FILE,
    TRIALS_DIR,
    TRIALS_PNG,
    TuneResult,
    plot_trials,
    trials_frame,
    write_best_config,
    write_trials,
)
from bertfit.tuning.space import Param, direction
from bertfit.tuning.study import (
    FINISHED,
    INTERRUPTED,
    PruneOnEpoch,
    best_trial,
    claim,
    finished,
    open_study,
    optuna_quiet,
    requeue_stopped,
)

logger = logging.getLogger(__name__)

BEST_MODEL_TRIAL = "best_model_trial"  # study attribute: the trial whose model OUT/best-model holds
DEFAULTS_TRIAL = "defaults"  # trial attribute: the trial enqueued with train's default settings
# train's own INFO lines (rows, epochs, calibration, 'model written') are held back in trials; warnings still show
QUIET = ("bertfit.training", "bertfit.data", "bertfit.checks", "bertfit.evaluation", "bertfit.prediction",
         "bertfit.modeling", "bertfit.tokenization")  # fmt: skip


@dataclass
class Tuning:
    """One tune call: what every trial trains on and with, and where it writes."""

    data: DataSource
    validation: DataSource
    cfg: RunConfig  # the fixed settings; a trial's params go on top
    space: list[Param]
    out: Path
    cache_dir: str | Path | None
    keep_best: bool
    check: bool  # run the data checks in the next trial (the first of this call)
    progress: bool | None
    defaults: dict[str, Any] = field(default_factory=dict)  # the first trial's settings: train's own

    @property
    def metric(self) -> str:
        return self.cfg.train.best_metric

    def trial_config(self, params: dict[str, Any]) -> RunConfig:
        return self.cfg.override(params).validate()

    def identity(self) -> dict[str, Any]:
        """What the trials depend on, kept with the study: a continued study must match it."""
        searched = {p.name for p in self.space}
        # train's resume identity, and the multi-label thresholds, which change the scores trials are ranked by
        settings = run_identity(self.cfg, thresholds=self.cfg.train.thresholds)
        return {
            "bertfit_data": input_identity(_inputs(self.data), self.cfg.data),
            "bertfit_validation_data": input_identity(_inputs(self.validation), self.cfg.data),
            "bertfit_settings": {k: v for k, v in settings.items() if k not in searched},
            "bertfit_search_space": {p.name: p.spec() for p in self.space},
            "bertfit_metric": self.metric,
        }

    def objective(self, trial: optuna.Trial) -> float:
        """Train the trial's settings into its scratch folder; the validation metric of its best epoch's model."""
        params = {p.name: p.suggest(trial) for p in self.space}
        folder = self.out / TRIALS_DIR / f"trial-{trial.number}"
        folder.parent.mkdir(exist_ok=True)
        kept, started = False, time.perf_counter()
        try:
            result = self.train(self.trial_config(params), folder, [PruneOnEpoch(trial, self.metric)])
            value = objective_value(result, self.metric)
            best = best_trial(trial.study)
            logger.info("trial %d: %s %.4f (%s); %s; %.0fs", trial.number, self.metric, value,
                        _against(value, best, self.metric), _shown(params), time.perf_counter() - started)  # fmt: skip
            kept = self.keep_best and (best is None or _better(value, best.value, self.metric))
            if kept:
                _move_model(folder, self.out / BEST_MODEL, trial.number)
                trial.study.set_user_attr(BEST_MODEL_TRIAL, trial.number)
            return value
        except optuna.TrialPruned as pruned:
            logger.info("trial %d: pruned %s; %s", trial.number, pruned, _shown(params))
            raise
        except KeyboardInterrupt:
            trial.set_user_attr(INTERRUPTED, True)  # its settings run again when the study is continued
            raise
        finally:
            self.check = False
            if not kept:
                _remove_scratch(folder, trial.number, self.keep_best)

    def train(self, cfg: RunConfig, folder: Path, callbacks: Sequence[TrainerCallback] = ()) -> TrainResult:
        with _quiet_training():
            return train(self.data, folder, validation=self.validation, config=cfg, progress=False,
                         cache_dir=self.cache_dir, resume=False, check=self.check,
                         callbacks=list(callbacks))  # fmt: skip


def run_search(
    tuning: Tuning, trials: int, budget: float | None, pruner: Any, sampler: Any, started: float
) -> TuneResult:
    """Open (or continue) the study, run the missing trials, write the outputs; the result."""
    lock = claim(tuning.out)
    try:
        with optuna_quiet():
            seed = tuning.cfg.train.seed
            study = open_study(tuning.out, tuning.identity(), direction(tuning.metric), seed, pruner, sampler)
            requeue_stopped(study)
            _first_the_defaults(study, tuning.defaults)
            _clear_scratch(tuning.out)
            _optimize(study, tuning, trials, budget)
            if (tuning.out / TRIALS_DIR).is_dir() and not any((tuning.out / TRIALS_DIR).iterdir()):
                (tuning.out / TRIALS_DIR).rmdir()  # the trials' scratch folders are removed one by one
            best_model = _best_model(study, tuning)
            write_outputs(study, tuning)
            return _result(study, tuning, best_model, started)
    finally:
        lock.release()


def _first_the_defaults(study: optuna.Study, defaults: dict[str, Any]) -> None:
    """A new study's first trial: the defaults' settings (those within the ranges; the sampler draws the rest)."""
    if study.trials or not defaults:
        return
    study.enqueue_trial(defaults, user_attrs={DEFAULTS_TRIAL: True})
    logger.info("trial 0: the defaults (%s), so that the best trial is no worse than them", _shown(defaults))


def _optimize(study: optuna.Study, tuning: Tuning, trials: int, budget: float | None) -> None:
    """Run trials until the study holds `trials` finished ones, or the time budget is spent (between trials)."""
    done = finished(study)
    if done >= trials:
        logger.info("%s: %d trials finished already (--trials %d); raise --trials to run more", tuning.out / DB_FILE,
                    done, trials)  # fmt: skip
        return
    limit = f", no new trial after {budget:.0f}s" if budget else ""
    logger.info("tuning %s on the validation data: %d trials%s; searching %s", tuning.metric, trials - done, limit,
                ", ".join(str(p) for p in tuning.space))  # fmt: skip
    progress = sys.stderr.isatty() if tuning.progress is None else tuning.progress
    with tqdm(total=trials, initial=done, desc="tune", unit=" trials", disable=not progress, file=sys.stderr) as bar:

        def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            bar.update(int(trial.state in FINISHED))
            write_outputs(study, tuning)

        study.optimize(tuning.objective, n_trials=trials - done, timeout=budget, callbacks=[after_trial])


def write_outputs(study: optuna.Study, tuning: Tuning) -> None:
    """trials.csv, trials.png and (once a trial completed) best.yaml, from the study as it is now."""
    trials = study.get_trials(deepcopy=False)
    write_trials(trials_frame(trials, [p.name for p in tuning.space]), tuning.out)
    plot_trials(trials, tuning.out / TRIALS_PNG, tuning.metric, direction(tuning.metric) == "minimize")
    best = best_trial(study)
    if best is None:
        return
    data = str(tuning.data) if isinstance(tuning.data, (str, Path)) else "DATA"
    val = str(tuning.validation) if isinstance(tuning.validation, (str, Path)) else "VALIDATION"
    header = [
        f"bertfit tune: trial {best.number}, the best of {finished(study)} finished trials in {DB_FILE} "
        f"({tuning.metric} {best.value:.4f} on the validation data)",
        f"train it with: bertfit train {data} --validation {val} --config {tuning.out / BEST_YAML} -o MODEL",
    ]
    write_best_config(tuning.trial_config(best.params), tuning.out / BEST_YAML, header)


def objective_value(result: TrainResult, metric: str) -> float:
    """The validation metric of the model train() kept (its best epoch): the report's value, or for the loss the
    lowest validation loss of an epoch (the report holds no loss)."""
    if metric == "loss":
        return min(float(h["eval_loss"]) for h in result.metrics["history"])
    return float(result.metrics[metric])


def _best_model(study: optuna.Study, tuning: Tuning) -> Path | None:
    """OUT/best-model when it holds the best trial's model. With keep_best, a best trial whose model was not kept
    (it ran without keep_best, or a kill came between) is trained again into it: the same seed, the same model."""
    target, best = tuning.out / BEST_MODEL, best_trial(study)
    held = study.user_attrs.get(BEST_MODEL_TRIAL)
    if best is None or (held == best.number and target.is_dir()):
        return target if best is not None else None
    if tuning.keep_best:
        logger.info("trial %d is the best; training its settings again into %s (its model was not kept)",
                    best.number, target)  # fmt: skip
        tuning.train(tuning.trial_config(best.params), target)
        study.set_user_attr(BEST_MODEL_TRIAL, best.number)
        return target
    if target.is_dir():
        logger.warning("%s holds the model of trial %s, not of the best trial %d; run again with --keep-best to "
                       "replace it", target, held, best.number)  # fmt: skip
    return None


def _result(study: optuna.Study, tuning: Tuning, best_model: Path | None, started: float) -> TuneResult:
    best = best_trial(study)
    frame = trials_frame(study.get_trials(deepcopy=False), [p.name for p in tuning.space])
    if best is None:
        logger.warning("no trial completed; best.yaml was not written")
        return TuneResult(tuning.out, tuning.metric, None, None, {}, None, best_model, frame, time.time() - started)
    return TuneResult(tuning.out, tuning.metric, float(best.value), best.number, dict(best.params),
                      tuning.out / BEST_YAML, best_model, frame, time.time() - started)  # fmt: skip


def _clear_scratch(out: Path) -> None:
    """Remove what trials of a stopped run left in OUT/trials (their settings run again). A kill between the two
    renames of `_move_model` leaves the earlier best model under .best-model.old and none at best-model: it goes
    back (the study still names its trial as the kept one); with both there, the old one is the leftover."""
    left = sorted((out / TRIALS_DIR).iterdir()) if (out / TRIALS_DIR).is_dir() else []
    old = out / f".{BEST_MODEL}.old"
    if old.exists() and not (out / BEST_MODEL).exists():
        os.replace(old, out / BEST_MODEL)
        logger.info("%s: the best model a stopped tune was replacing is back in place", out / BEST_MODEL)
    left += [old] if old.exists() else []
    for path in left:
        logger.info("removing %s: what a stopped tune left of a trial (tune's own scratch)", path)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _remove_scratch(folder: Path, number: int, keep_best: bool) -> None:
    """Remove a trial's model folder and the work folder train() leaves beside it when stopped, with a log line."""
    paths = [p for p in (folder, work_folder(folder)) if p.exists()]
    for path in paths:
        shutil.rmtree(path)
    if paths:
        why = "" if keep_best else "; --keep-best keeps the best trial's model"
        logger.info("trial %d: removed its scratch folder %s%s", number, " and ".join(map(str, paths)), why)


def _move_model(model: Path, target: Path, number: int) -> None:
    """Put a trial's model folder at `target`, replacing the earlier best trial's (renames on one file system)."""
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        os.replace(target, old)
        os.replace(model, target)
        shutil.rmtree(old)
        logger.info("trial %d: its model replaces the earlier best in %s", number, target)
    else:
        os.replace(model, target)
        logger.info("trial %d: its model is kept in %s", number, target)


@contextmanager
def _quiet_training() -> Iterator[None]:
    """train()'s INFO lines held back during trials, unless the caller asked for debug lines."""
    loggers = [logging.getLogger(name) for name in QUIET]
    saved = [log.level for log in loggers]
    if logging.getLogger("bertfit").getEffectiveLevel() > logging.DEBUG:
        for log in loggers:
            log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for log, level in zip(loggers, saved):
            log.setLevel(level)


def _inputs(source: DataSource) -> list[Path] | pd.DataFrame:
    return source if isinstance(source, pd.DataFrame) else data_files(source)


def _better(value: float, than: float, metric: str) -> bool:
    return value < than if metric == "loss" else value > than


def _against(value: float, best: optuna.trial.FrozenTrial | None, metric: str) -> str:
    if best is None or _better(value, best.value, metric):
        return "best so far"
    return f"best {best.value:.4f}, trial {best.number}"


def _shown(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.2e}" if k == "lr" else f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in params.items())  # fmt: skip
