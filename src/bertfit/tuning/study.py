"""The Optuna study behind `bertfit tune`: kept in OUT/tune.db (SQLite), used by one process at a time, refused when
it was made for other data or settings, and continued after a kill.

A trial that a stopped run left RUNNING is failed and its settings are queued to run again when the study is opened.
That is safe because opening needs the output folder's lock (a kernel file lock, which a killed process no longer
holds): every RUNNING trial then belongs to a process that is gone. Optuna's alternative, heartbeats with
RetryFailedTrialCallback, fails such a trial only once its heartbeat is older than a grace period, so a run started
right after a kill would find it still RUNNING (and the heartbeat thread writes to the database all along).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock, Timeout
from optuna.trial import FrozenTrial, TrialState
from transformers import TrainerCallback

from bertfit.errors import DataError
from bertfit.tuning.report import DB_FILE

logger = logging.getLogger(__name__)

STUDY_NAME, LOCK_FILE = "bertfit-tune", ".tune.lock"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what --trials counts
RETRY_OF, INTERRUPTED = "retry_of", "interrupted"  # trial user attributes
# MedianPruner: no pruning before 5 trials have completed, nor in a trial's first epoch (the first epoch's score
# says little about the last: warmup, and a learning rate still high)
PRUNE_AFTER_TRIALS, PRUNE_FROM_EPOCH = 5, 2


def claim(out: Path) -> FileLock:
    """The output folder's lock, held while a tune runs into it: a second tune into the same folder is refused."""
    lock = FileLock(out / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise DataError(
            f"{out}: another bertfit tune is running into this folder; wait for it to finish, stop it, or choose "
            "another --output"
        ) from None
    return lock


def open_study(
    out: Path,
    identity: dict[str, Any],
    direction: str,
    seed: int,
    pruner: optuna.pruners.BasePruner | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> optuna.Study:
    """The study in OUT/tune.db: created with `identity` (what the trials depend on: data, fixed settings, search
    space, metric) in its user attributes, or loaded when that identity matches; a one-line error when it does not.

    The sampler is TPE seeded from `seed` and the number of trials so far (a continued study does not draw the
    first trials' settings again); the pruner is MedianPruner (PRUNE_AFTER_TRIALS, PRUNE_FROM_EPOCH)."""
    db = out / DB_FILE
    storage = optuna.storages.RDBStorage(f"sqlite:///{db.resolve()}")
    names = optuna.get_all_study_names(storage)
    if names and STUDY_NAME not in names:
        raise DataError(
            f"{db}: holds other Optuna studies ({', '.join(names)}), not bertfit's; choose another --output"
        )
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage) if STUDY_NAME in names else None
    if study is not None and study.trials:
        _check_identity(study, identity, db)
        logger.info("%s: continuing the study (%d trials so far)", db, len(study.trials))
    else:
        if study is not None:  # a run stopped before its first trial began: nothing to keep
            optuna.delete_study(study_name=STUDY_NAME, storage=storage)
        study = optuna.create_study(storage=storage, study_name=STUDY_NAME, direction=direction)
        for key, value in identity.items():
            study.set_user_attr(key, value)
    study.sampler = sampler or optuna.samplers.TPESampler(seed=seed + len(study.trials))
    study.pruner = pruner or optuna.pruners.MedianPruner(
        n_startup_trials=PRUNE_AFTER_TRIALS, n_warmup_steps=PRUNE_FROM_EPOCH
    )
    return study


def requeue_stopped(study: optuna.Study) -> list[int]:
    """Fail the trials a stopped run left RUNNING (killed) and queue their settings again, as for a trial that was
    interrupted (Ctrl-C); each is logged. Returns their numbers."""
    retried = {t.user_attrs.get(RETRY_OF) for t in study.get_trials(deepcopy=False)}
    stopped = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.FAIL)):
        if trial.number in retried or not (trial.state == TrialState.RUNNING or trial.user_attrs.get(INTERRUPTED)):
            continue
        if trial.state == TrialState.RUNNING:
            study.tell(trial.number, state=TrialState.FAIL)
            how = "was left running by a run that stopped (killed?); marked failed"
        else:
            how = "was interrupted"
        study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})
        logger.warning("trial %d %s; its settings run again in a new trial", trial.number, how)
        stopped.append(trial.number)
    return stopped


def finished(study: optuna.Study) -> int:
    """Trials that count towards --trials: complete or pruned (failed ones are retried, not counted)."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial, or None before any trial completed."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    pick = min if study.direction == optuna.study.StudyDirection.MINIMIZE else max
    return pick(complete, key=lambda t: t.value)


@contextmanager
def optuna_quiet() -> Iterator[None]:
    """Optuna's own log lines off (bertfit logs each trial; a failed trial's traceback must not reach the user)."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


class PruneOnEpoch(TrainerCallback):
    """Reports the validation metric after every epoch to the trial; when the pruner gives the trial up (never at
    its last epoch, which costs nothing more), raises optuna.TrialPruned out of Trainer: training stops at once and
    the trial's model folder is never written (its scratch folder is removed by the caller)."""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial, self.metric = trial, metric
        self.epochs = 0

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kw: Any):
        if not metrics or state.epoch is None or f"eval_{self.metric}" not in metrics:
            return
        self.epochs = int(round(state.epoch))
        value = float(metrics[f"eval_{self.metric}"])
        self.trial.report(value, self.epochs)
        if self.epochs < args.num_train_epochs and self.trial.should_prune():
            raise optuna.TrialPruned(
                f"after epoch {self.epochs} of {args.num_train_epochs:g} ({self.metric} {value:.4f})"
            )


def _check_identity(study: optuna.Study, identity: dict[str, Any], db: Path) -> None:
    """Refuse a study made for other data, settings, search space or metric, naming what differs."""
    saved = study.user_attrs
    wanted = json.loads(json.dumps(identity, default=str))
    differ = [key for key, value in wanted.items() if saved.get(key) != value]
    if differ:
        what = ", ".join(_difference(key, saved.get(key), wanted[key]) for key in differ)
        raise DataError(
            f"{db}: this study was tuned with other {what}; run the same command as before to continue it, or "
            "choose another --output (or delete tune.db to start over)"
        )


def _difference(key: str, before: Any, now: Any) -> str:
    """'settings (epochs 2.0 before, 3.0 now)'; for data, only its name."""
    name = key.removeprefix("bertfit_").replace("_", " ")
    if not (isinstance(before, dict) and isinstance(now, dict)) or key.endswith("data"):
        return name
    keys = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    return f"{name} ({'; '.join(f'{k} {before.get(k)} before, {now.get(k)} now' for k in keys)})"
