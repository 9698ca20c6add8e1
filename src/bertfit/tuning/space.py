"""What `bertfit tune` searches: the training settings, their ranges, which of them the user fixed; and the checks of
a request that need neither torch nor optuna (validation data, trials, time budget), so that the CLI refuses at once.

The ranges suit small encoders such as the default all-MiniLM-L6-v2: learning rates from 1e-5 to 5e-4 (log scale;
the defaults are 2e-4 and 1e-4), 2 to 5 epochs (more on small data, where the default takes more: `epochs_range`),
batch sizes 16, 32 and 64, warmup 0 to 20% of the steps, weight decay 0, 0.01 or 0.1, a linear or exponential decay,
class weights none or auto, layer-wise learning-rate decay off, 0.9 or 0.8, the top layer re-initialised or not,
and label smoothing 0 or 0.1. A setting the user gave (an option, --set, a config file, a keyword) is not searched.
A new study's first trial is the defaults (`default_values`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bertfit.config import (
    DEFAULT_EPOCHS,
    SCHEDULERS,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    default_epochs,
    default_lr,
    parse_save_every,
)
from bertfit.errors import ConfigError, MissingDependency


@dataclass(frozen=True)
class Param:
    """One searched setting, a field of TrainConfig: a float range (on a log scale or not), an int range, or
    choices."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The trial's value (an optuna.Trial's suggest_* call, so the sampler sees the distribution)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high))
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.kind == "log")

    def holds(self, value: Any) -> bool:
        """Whether `value` is one this setting's range or choices can take."""
        if self.kind == "choice":
            return value in self.choices
        return value is not None and self.low <= value <= self.high

    def spec(self) -> list[Any]:
        """As plain JSON: the choices, or [kind, low, high]."""
        return list(self.choices) if self.kind == "choice" else [self.kind, self.low, self.high]

    def __str__(self) -> str:
        if self.kind == "choice":
            return f"{self.name} in {{{', '.join(str(c) for c in self.choices)}}}"
        return f"{self.name} {self.low:g}..{self.high:g}{' (log)' if self.kind == 'log' else ''}"


SPACE = (
    Param("lr", "log", 1e-5, 5e-4),
    Param("epochs", "int", 2, 5),  # the high end grows on small data: epochs_range
    Param("batch_size", "choice", choices=(16, 32, 64)),
    Param("warmup", "float", 0.0, 0.2),
    Param("weight_decay", "choice", choices=(0.0, 0.01, 0.1)),
    Param("scheduler", "choice", choices=SCHEDULERS),
    Param("class_weights", "choice", choices=("none", "auto")),
    Param("layer_decay", "choice", choices=(1.0, 0.9, 0.8)),
    Param("reinit_layers", "choice", choices=(0, 1)),
    Param("label_smoothing", "choice", choices=(0.0, 0.1)),
)
SEARCHABLE = tuple(p.name for p in SPACE)


def search_space(
    cfg: RunConfig, fixed: set[str], train_rows: int | None, ranges: Mapping[str, Sequence[Any]] | None = None
) -> list[Param]:
    """The settings to search: SPACE less the fixed ones, with the caller's `ranges` ((low, high) for lr, epochs
    and warmup; a list of choices for the others) in place of the defaults. The epochs range reaches what the
    default would train on this much data (`epochs_range`). A one-line ConfigError when nothing is left to search,
    or for a range that is not one."""
    ranges = dict(ranges or {})
    unknown = sorted(set(ranges) - set(SEARCHABLE))
    if unknown:
        raise ConfigError(f"ranges: {', '.join(unknown)} cannot be searched; tune searches {', '.join(SEARCHABLE)}")
    both = sorted(set(ranges) & fixed)
    if both:
        raise ConfigError(f"{', '.join(both)}: given a value and a range; give one of them")
    params = []
    for param in SPACE:
        if param.name in fixed:
            continue
        if param.name in ranges:
            param = _ranged(param, ranges[param.name])
        elif param.name == "epochs":
            param = dataclasses.replace(param, high=epochs_range(cfg.train, train_rows)[1])
        params.append(param)
    if not params:
        raise ConfigError(
            f"every setting tune searches is fixed ({', '.join(SEARCHABLE)}); leave out the ones to search "
            "(in a config file from an earlier tune, remove them)"
        )
    return params


def epochs_range(train: TrainConfig, train_rows: int | None) -> tuple[int, int]:
    """2 to 5 epochs, or up to the default's epochs for data this small (the default trains small data until it
    reaches 500 optimizer steps: `config.default_epochs`), counted at the fixed batch size or the default 32."""
    if not train_rows:
        return 2, 5
    steps = math.ceil(train_rows / (train.batch_size * train.grad_accum))
    return 2, max(5, int(default_epochs(steps)))


def default_values(space: Sequence[Param], train: TrainConfig, train_rows: int | None) -> dict[str, Any]:
    """What `bertfit train` would use for each searched setting on this data (epochs and learning rate resolved as
    train resolves them), where the setting's range holds it: the study's first trial, so that a tune ends no worse
    on validation than the defaults (the same seed trains the same model)."""
    steps = math.ceil(train_rows / (train.batch_size * train.grad_accum)) if train_rows else None
    epochs = train.epochs or (int(default_epochs(steps)) if steps else int(DEFAULT_EPOCHS))
    lr = train.lr or default_lr(int(steps * epochs) if steps else 0)
    values = {p.name: getattr(TrainConfig(), p.name) for p in SPACE} | {"lr": lr, "epochs": epochs}
    return {p.name: values[p.name] for p in space if p.holds(values[p.name])}


def fixed_names(cfg: RunConfig, overrides: Mapping[str, Any], fixed: Iterable[str] = ()) -> set[str]:
    """The searchable settings the user fixed: named in `overrides` or `fixed` (a config file's keys, --set), or set
    in `cfg` to something else than the default."""
    known = {f.name for cls in (DataConfig, ModelConfig, TrainConfig) for f in dataclasses.fields(cls)}
    names = {key.rpartition(".")[2] for key, value in overrides.items() if value is not None}
    for name in fixed:
        name = name.rpartition(".")[2]
        if name not in known:
            raise ConfigError(f"fixed: unknown setting '{name}'")
        names.add(name)
    defaults = TrainConfig()
    names |= {name for name in SEARCHABLE if getattr(cfg.train, name) != getattr(defaults, name)}
    return names & set(SEARCHABLE)


def direction(metric: str) -> str:
    """How the objective goes: the validation loss down, every other metric up."""
    return "minimize" if metric == "loss" else "maximize"


def check_request(validation: Any, trials: int, time_budget: str | float | None) -> float | None:
    """Refuse, before any work, a request tune cannot serve; the time budget in seconds (None: no limit)."""
    if validation is None:
        raise ConfigError(
            "bertfit tune scores every trial on held-out labelled data and never on test data; pass --validation FILE "
            "(e.g. a validation split; keep the test split for scoring the tuned model once)"
        )
    if int(trials) < 1:
        raise ConfigError(f"--trials must be at least 1 (got {trials}); try 20")
    return parse_time_budget(time_budget)


def parse_time_budget(value: str | float | None) -> float | None:
    """'90s', '30m', '2h' (or a number of seconds from Python) -> seconds; None: no limit."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    try:
        kind, seconds = parse_save_every(str(value))  # the duration reader of --save-every
    except ConfigError:
        kind, seconds = "", 0.0
    if kind != "seconds":
        raise ConfigError(f"--time-budget must be a time such as '90s', '30m' or '2h' (got '{value}')")
    return float(seconds)


def require_optuna() -> Any:
    """The optuna module, or a one-line error with the install hint."""
    try:
        import optuna
    except ImportError:
        raise MissingDependency("optuna", "tune", "bertfit tune") from None
    return optuna


def _ranged(param: Param, given: Sequence[Any]) -> Param:
    """The param with the caller's range: (low, high) for a range, choices for a choice; each value checked as the
    setting is (a scheduler the trainer lacks, a negative warmup...)."""
    values = list(given) if isinstance(given, (list, tuple)) else [given]
    if param.kind != "choice" and (len(values) != 2 or not values[0] <= values[1]):
        raise ConfigError(f"ranges: {param.name} takes (low, high) with low <= high (got {given!r})")
    if not values:
        raise ConfigError(f"ranges: {param.name} needs at least one choice")
    for value in values:
        try:
            RunConfig().override({param.name: value}).validate()
        except ConfigError as err:
            raise ConfigError(f"ranges: {param.name}: {err}") from None
    if param.kind == "choice":
        return dataclasses.replace(param, choices=tuple(values))
    return dataclasses.replace(param, low=values[0], high=values[1])
