"""Typed run configuration: what to read, which model, how to train. Loaded from YAML/JSON, overridden by options.

Each field is the one place its setting is defined: type, default and help text (`setting`). `bertfit train` makes
its options from these fields, and `--set section.key=value` reaches every one of them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from bertfit.data.textfiles import ReadOptions, parse_columns
from bertfit.errors import ConfigError

SCHEDULERS = ("linear", "exponential")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
METRICS = ("macro_f1", "micro_f1", "accuracy", "mcc", "loss")
LONG_MODES = ("truncate", "head-tail", "sliding")
AGGREGATES = ("mean", "max")
THRESHOLDS = ("tuned", "global")


def setting(
    default: Any = MISSING,
    help: str = "",
    *,
    option: str | None = None,
    factory: Any = MISSING,
    cli: bool = True,
    parse: Callable[[Any], Any] | None = None,
) -> Any:
    """A dataclass field with its help text. option: the CLI option's name [--field-name]; cli=False: no option of
    its own (reached by `--set section.key=value` and config files); parse: reads a value written as text."""
    meta = {"help": help, "option": option, "cli": cli, "parse": parse}
    return field(default=default, default_factory=factory, metadata=meta)


def parse_label_map(spec: str | dict[str, str] | None) -> dict[str, str] | None:
    """Parse '1=negative,2=positive' into {'1': 'negative', '2': 'positive'}."""
    if spec is None or isinstance(spec, dict):
        return None if spec is None else {str(k): str(v) for k, v in spec.items()}
    mapping: dict[str, str] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        raw, sep, name = part.partition("=")
        if not sep or not raw.strip() or not name.strip():
            raise ConfigError(f"--label-map: cannot read '{part.strip()}'; write it as 'RAW=NAME,RAW=NAME'")
        mapping[raw.strip()] = name.strip()
    if not mapping:
        raise ConfigError("--label-map is empty; write it as 'RAW=NAME,RAW=NAME', e.g. '1=negative,2=positive'")
    return mapping


def _column_list(value: str | list[str]) -> list[str]:
    return list(parse_columns(value) or ())


@dataclass
class DataConfig:
    """Which columns hold the text and the label, and how the validation set is made."""

    text_cols: list[str] = setting(
        help="Text column; repeat to join several columns.", option="--text-col", factory=lambda: ["text"]
    )
    label_col: str = setting("label", "Label column [label].")
    val_fraction: float = setting(0.1, "Share split off for validation [0.1].")
    # a cap on the split-off share, so that big data is not evaluated for hours
    val_max_rows: int = setting(20_000, "At most this many rows split off for validation [20000].", cli=False)
    # classes: the mapped names that occur, in map order
    label_map: dict[str, str] | None = setting(None, "Rename labels: '1=negative,2=positive'.", parse=parse_label_map)
    max_length: int = setting(128, "Max tokens per text [128].")
    pair_col: str | None = setting(  # token_type_ids 1
        None, "Sentence pairs: column of each row's second text (encoded as segment B)."
    )
    multi_label: bool = setting(  # also on for list columns and with label_sep
        False, "Each row has a set of labels (lists, or strings split on --label-sep).", option="--multi-label"
    )
    label_sep: str | None = setting(None, "Multi-label: the separator between a row's labels ['admiration,joy': ','].")
    long: str = setting(
        "truncate", "Texts over max length: truncate | head-tail | sliding (overlapping windows) [truncate]."
    )
    stride: int | None = setting(None, "Sliding windows: tokens shared by neighbours [max length / 4].")
    aggregate: str = setting("mean", "Sliding windows: mean | max of window logits [mean].")
    columns: list[str] | None = setting(
        None, "A CSV/TSV without a header row: its column names in order, e.g. 'label,text'.", parse=_column_list
    )
    quoting: str = setting(
        "auto", "CSV/TSV quoting: auto | csv | none [auto: CSV quotes; TSV only if the file shows quoting]."
    )
    encoding: str = setting("utf-8", "Text encoding of CSV/TSV/JSON Lines input [utf-8].")  # a UTF-8 BOM is handled
    # read HDF5 files whose columns are pickled (unpickling can run code); the option also sets ModelConfig's
    allow_pickle: bool = setting(False, "Allow pickle (.bin) weights and pickled HDF5 columns you trust.")

    def validate(self) -> None:
        if not self.text_cols:
            raise ConfigError("text_cols is empty; name at least one text column (--text-col text)")
        if self.pair_col is not None and self.long != "truncate":
            raise ConfigError(f"--pair-col works with --long truncate only (got --long {self.long})")
        if self.pair_col is not None and self.pair_col in self.text_cols:
            raise ConfigError(f"--pair-col '{self.pair_col}' is also a --text-col; name the second text's column")
        if self.label_sep == "":
            raise ConfigError("label_sep is empty; give the character between labels, e.g. --label-sep ','")
        if not 0.0 < self.val_fraction < 0.9:
            raise ConfigError(f"val_fraction must be between 0 and 0.9 (got {self.val_fraction}); try 0.1")
        if self.val_max_rows < 1:
            raise ConfigError(f"val_max_rows must be at least 1 (got {self.val_max_rows}); try 20000")
        if self.max_length < 8:
            raise ConfigError(f"max_length must be at least 8 tokens (got {self.max_length}); try 128")
        check_windows(self.long, self.window_stride, self.aggregate, self.max_length)
        self.read_options  # noqa: B018 - checks quoting, encoding and columns

    @property
    def read_options(self) -> ReadOptions:
        """How to read the data files (headerless columns, quoting, encoding, pickled HDF5)."""
        columns = tuple(self.columns) if self.columns is not None else None
        return ReadOptions(columns, self.quoting, self.encoding, self.allow_pickle)

    @property
    def read_as_text(self) -> list[str]:
        """Every column the model reads: the text columns and the pair column."""
        return [*self.text_cols, *([self.pair_col] if self.pair_col else [])]

    @property
    def is_multi_label(self) -> bool:
        return self.multi_label or self.label_sep is not None

    @property
    def window_stride(self) -> int:
        return self.max_length // 4 if self.stride is None else self.stride


@dataclass
class ModelConfig:
    """Which pretrained encoder to start from, and how far to trust its files."""

    model: str | None = setting(None, "Base model: hub id or folder [all-MiniLM-L6-v2].")
    # --allow-pickle sets this and DataConfig.allow_pickle; --set model.allow_pickle=true this one alone
    allow_pickle: bool = setting(False, "Load .bin (pickle) weights when no safetensors exist.", cli=False)
    trust_remote_code: bool = setting(False, "Run model code from the hub (only if trusted).")


@dataclass
class TrainConfig:
    """Optimisation settings; the defaults reach a strong model on the datasets in shared/data."""

    epochs: float | None = setting(  # None: default_epochs() of the steps an epoch takes (small data: more epochs)
        None, "Training epochs [3; on small data as many as reach 500 optimizer steps, at most 30]."
    )
    batch_size: int = setting(32, "Training batch size [32].")
    eval_batch_size: int = setting(128, "Evaluation batch size [128].", cli=False)
    lr: float | None = setting(  # None: default_lr() of the planned optimizer steps (docs/benchmarks.md, defaults)
        None, "Peak learning rate [2e-4 for up to 3,000 optimizer steps, 1e-4 beyond]."
    )
    weight_decay: float = setting(0.01, "AdamW weight decay [0.01].")
    warmup: float = setting(0.1, "Share of steps spent warming up [0.1].")
    scheduler: str = setting("linear", "linear | exponential decay after warmup.")
    grad_accum: int = setting(1, "Gradient accumulation steps [1].")
    seed: int = setting(42, "Random seed [42].")
    best_metric: str = setting("macro_f1", "macro_f1 | micro_f1 | accuracy | mcc | loss.")
    precision: str = setting("auto", "auto | bf16 | fp16 | fp32 (auto: bf16 on AMX or AVX512-BF16 CPUs, new GPUs).")
    group_by_length: bool = setting(True, "Batch texts of similar length together [true].", cli=False)
    class_weights: str = setting("none", "none | auto (inverse class frequency) | a JSON/YAML file of label: weight.")
    patience: int = setting(0, "Stop after N epochs without improvement [0: off].")
    save_every: str = setting("epoch", "Checkpoint every N steps ('500') or minutes ('30m') [epoch].")  # or '2h'
    keep_checkpoints: int = setting(2, "Newest checkpoints kept for resuming [2].")  # the best one is kept too
    max_steps: int = setting(0, "Stop after N optimizer steps [0: all epochs].")
    report_to: str = setting(
        "auto", "auto | none | tensorboard | other Trainer loggers [auto: TensorBoard if installed]."
    )
    thresholds: str = setting("tuned", "Multi-label: tuned (per label, on validation) | global (0.5) [tuned].")
    layer_decay: float = setting(  # training/layers.py; docs/benchmarks.md, "Choosing the training defaults"
        1.0, "Layer-wise learning-rate decay: each layer trains at this factor of the one above it [1: off]."
    )
    reinit_layers: int = setting(0, "Re-initialise the encoder's top N layers before training [0].")
    label_smoothing: float = setting(0.0, "Label smoothing of the cross-entropy (one label per row) [0].")
    record_dynamics: bool = setting(  # training/dynamics.py; part of the run identity, as it must be in each checkpoint
        False, "Save each training row's per-epoch confidence, variability, correctness and AUM to dynamics.parquet."
    )

    def validate(self) -> None:
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError(f"epochs must be positive (got {self.epochs})")
        if self.batch_size < 1 or self.eval_batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("batch_size, eval_batch_size and grad_accum must be at least 1")
        if self.lr is not None and not 0 < self.lr < 1:
            raise ConfigError(f"lr must be between 0 and 1 (got {self.lr}); try 2e-4")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"warmup is a share of the steps, between 0 and 1 (got {self.warmup})")
        if self.patience < 0 or self.keep_checkpoints < 1 or self.max_steps < 0:
            raise ConfigError("patience and max_steps must be 0 or more, keep_checkpoints at least 1")
        if not 0 < self.layer_decay <= 1:
            raise ConfigError(f"layer_decay must be above 0 and at most 1 (got {self.layer_decay}); try 0.9 (1: off)")
        if self.reinit_layers < 0:
            raise ConfigError(f"reinit_layers must be 0 or more (got {self.reinit_layers})")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be at least 0 and below 1 (got {self.label_smoothing}); try 0.1")
        parse_save_every(self.save_every)
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("best_metric", self.best_metric, METRICS)
        check_choice("thresholds", self.thresholds, THRESHOLDS)


# The learning rate when none is given, chosen on validation splits only: 2e-4 beat 1e-4 on emotion (1,500 optimizer
# steps; macro-F1 0.917 vs 0.911) and 1e-4 beat 2e-4 on SST-2 (5,700 steps; accuracy 0.900 vs 0.891). Longer runs
# take the smaller rate; the switch point between those two runs is a round number, not a measured optimum.
SHORT_RUN_LR, LONG_RUN_LR, LONG_RUN_STEPS = 2e-4, 1e-4, 3000


def default_lr(planned_steps: int) -> float:
    """Peak learning rate for a run of this many optimizer steps: 2e-4 up to 3,000 steps, 1e-4 beyond."""
    return SHORT_RUN_LR if planned_steps <= LONG_RUN_STEPS else LONG_RUN_LR


# Epochs when none are given: 3, or on small data as many as it takes to reach MIN_STEPS optimizer steps (at most
# MAX_EPOCHS); the best epoch on validation is kept. Chosen on the emotion validation split from 1,000 training rows
# (docs/benchmarks.md, "Small data"): 3 epochs (87 steps) gave macro-F1 0.49, 500 steps 0.81, 1,000 steps 0.79.
# MAX_EPOCHS bounds the time on very small data; it was not tuned.
DEFAULT_EPOCHS, MIN_STEPS, MAX_EPOCHS = 3.0, 500, 30.0


def default_epochs(steps_per_epoch: int) -> float:
    """Epochs for a run whose epoch is this many optimizer steps: 3, or more (at most 30) to reach 500 steps."""
    return max(DEFAULT_EPOCHS, min(MAX_EPOCHS, float(math.ceil(MIN_STEPS / max(1, steps_per_epoch)))))


@dataclass
class RunConfig:
    """Everything `bertfit train` needs besides the data files; saved into bertfit.json."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> RunConfig:
        self.data.validate()
        self.train.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def override(self, values: dict[str, Any]) -> RunConfig:
        """Return a copy with `name: value` settings applied; None values are left alone. A flat name sets every
        section's field of that name (allow_pickle is both the model's and the data's); `section.name`, one."""
        new = dataclasses.replace(
            self,
            data=dataclasses.replace(self.data),
            model=dataclasses.replace(self.model),
            train=dataclasses.replace(self.train),
        )
        for key, value in values.items():
            if value is None:
                continue
            name = key.rpartition(".")[2]
            for section in _sections_of(new, key):
                setattr(section, name, _coerce(section, name, value))
        return new

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> RunConfig:
        """Build from nested sections (`data:`, `model:`, `train:`) and/or flat keys."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a mapping of settings, found {type(raw).__name__}")
        flat: dict[str, Any] = {}
        for key, value in raw.items():
            if key in ("data", "model", "train") and isinstance(value, dict):
                flat.update(value)
            else:
                flat[key] = value
        try:
            return cls().override(flat)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None


def load_config(path: str | Path) -> RunConfig:
    """Read a run configuration from a .yaml/.yml or .json file."""
    return RunConfig.from_dict(_read_config(Path(path)), source=str(path))


def config_names(path: str | Path) -> list[str]:
    """The settings a config file names (flat, or under data:/model:/train:), whatever their values."""
    raw = _read_config(Path(path))
    names: list[str] = []
    for key, value in raw.items() if isinstance(raw, dict) else ():
        names += list(value) if key in ("data", "model", "train") and isinstance(value, dict) else [key]
    return names


def _read_config(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        first = str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({first})") from None
    return raw or {}


def save_config(config: RunConfig, path: str | Path) -> None:
    path = Path(path)
    data = config.to_dict()
    if path.suffix == ".json":
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def parse_save_every(value: str) -> tuple[str, float]:
    """'epoch' -> ('epoch', 0); '500' -> ('steps', 500); '30m' / '2h' / '90s' -> ('seconds', 1800 / 7200 / 90)."""
    text = str(value).strip().lower()
    if text == "epoch":
        return "epoch", 0
    units = {"s": 1, "m": 60, "min": 60, "h": 3600}
    match = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([a-z]*)", text)
    number, unit = match.groups() if match else ("0", "")
    if float(number) <= 0 or (unit and unit not in units) or (not unit and "." in number):
        raise ConfigError(
            f"save_every must be 'epoch', a number of steps ('500') or a time ('30m', '2h') (got '{value}')"
        )
    return ("seconds", float(number) * units[unit]) if unit else ("steps", int(number))


def check_windows(long: str, stride: int, aggregate: str, max_length: int) -> None:
    """The long-text settings: a known mode and aggregate, and a stride of 0 to half the window."""
    check_choice("long", long, LONG_MODES)
    check_choice("aggregate", aggregate, AGGREGATES)
    if not 0 <= stride <= max_length // 2:
        raise ConfigError(
            f"stride (tokens shared by neighbouring windows) must be 0 to max_length / 2 = {max_length // 2} "
            f"(got {stride}); try {max_length // 4}"
        )


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """The value, when it is one of the choices; else a one-line ConfigError listing them."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)} (got '{value}')")
    return value


def _sections_of(config: RunConfig, key: str) -> list[Any]:
    """The sections that have the setting `key` ('lr' or 'train.lr'); a one-line ConfigError when none has."""
    section_name, dot, name = key.rpartition(".")
    sections = {"data": config.data, "model": config.model, "train": config.train}
    named = [sections[section_name]] if section_name in sections else [] if dot else list(sections.values())
    found = [s for s in named if name in {f.name for f in fields(s)}]
    if found:
        return found
    known = sorted(f"{n}.{f.name}" if dot else f.name for n, s in sections.items() for f in fields(s))
    raise ConfigError(f"unknown setting '{key}'; known settings: {', '.join(known)}")


def _coerce(section: Any, key: str, value: Any) -> Any:
    """Convert YAML/CLI values to the field's type, with a one-line error when that is impossible."""
    parse = next(f.metadata.get("parse") for f in fields(section) if f.name == key)
    if parse is not None:
        return parse(value)
    kind = field_type(type(section), key)
    try:
        if kind is bool:
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if kind in (int, float):
            return kind(value)
        if typing.get_origin(kind) is list:
            return [value] if isinstance(value, str) else [str(v) for v in value]
    except (TypeError, ValueError):
        kind_name = (typing.get_origin(kind) or kind).__name__
        raise ConfigError(f"setting '{key}' must be a {kind_name} (got {value!r})") from None
    return value


@functools.cache
def field_type(cls: type, name: str) -> Any:
    """A config field's type without its `| None`: `int | None` -> int, `list[str]` -> list[str]."""
    hint = typing.get_type_hints(cls)[name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return hint
