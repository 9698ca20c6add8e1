"""What a Python caller adds to a training run, as sentence-transformers and setfit allow: Trainer callbacks, extra
validation metrics, and TrainingArguments values of its own."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from transformers import EvalPrediction, TrainerCallback, TrainingArguments

from bertfit.errors import ConfigError

Metrics = Callable[[EvalPrediction], dict[str, Any]]

# TrainingArguments that bertfit sets from its own settings (pass the setting instead) ...
AS_SETTING = {
    "num_train_epochs": "epochs",
    "max_steps": "max_steps",
    "per_device_train_batch_size": "batch_size",
    "per_device_eval_batch_size": "eval_batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "learning_rate": "lr",
    "weight_decay": "weight_decay",
    "warmup_steps": "warmup",
    "seed": "seed",
    "data_seed": "seed",
    "bf16": "precision",
    "fp16": "precision",
    "metric_for_best_model": "best_metric",
    "greater_is_better": "best_metric",
    "report_to": "report_to",
    "save_total_limit": "keep_checkpoints",
    "disable_tqdm": "progress",
}
# ... and those its checkpoints, resuming, best-model choice and loss depend on, which no caller may change.
FIXED = frozenset(
    {
        "output_dir",
        "eval_strategy",
        "save_strategy",
        "load_best_model_at_end",
        "resume_from_checkpoint",
        "use_cpu",
        "average_tokens_across_devices",
    }
)


@dataclass
class Extensions:
    """A caller's additions to train(), checked before any work starts."""

    callbacks: list[TrainerCallback | type[TrainerCallback]] = field(default_factory=list)
    compute_metrics: Metrics | None = None
    trainer_args: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def checked(
        cls,
        callbacks: Sequence[TrainerCallback | type[TrainerCallback]] | None,
        compute_metrics: Metrics | None,
        trainer_args: dict[str, Any] | None,
        scheduler: str,
    ) -> Extensions:
        for callback in callbacks or []:
            if not isinstance(callback, TrainerCallback) and not _is_callback_class(callback):
                raise ConfigError(f"callbacks: {callback!r} is not a transformers.TrainerCallback (instance or class)")
        if compute_metrics is not None and not callable(compute_metrics):
            raise ConfigError("compute_metrics must be a function of an EvalPrediction that returns a dict")
        trainer_args = dict(trainer_args or {})
        for key in trainer_args:
            check_trainer_arg(key)
        if scheduler == "exponential" and "lr_scheduler_type" in trainer_args:
            raise ConfigError(
                "trainer_args lr_scheduler_type and scheduler exponential both set the schedule; give one of them"
            )
        return cls(list(callbacks or []), compute_metrics, trainer_args)

    def identity(self) -> dict[str, Any]:
        """trainer_args as plain JSON values: they change what a run computes, so a checkpoint is continued only by
        a run with the same ones (callbacks and compute_metrics are code, which no identity can hold)."""
        return json.loads(json.dumps(self.trainer_args, default=str, sort_keys=True))


def check_trainer_arg(key: str) -> None:
    """Refuse a TrainingArguments key that does not exist, or that bertfit must set itself."""
    if key not in _training_argument_names():
        raise ConfigError(f"trainer_args: {key!r} is not a transformers.TrainingArguments field")
    if key in AS_SETTING:
        raise ConfigError(f"trainer_args: {key} is set from bertfit's setting {AS_SETTING[key]}; pass that instead")
    if key in FIXED:
        raise ConfigError(f"trainer_args: {key} is set by bertfit (its checkpoints and best-model choice need it)")


def merged_metrics(own: Metrics, extra: Metrics | None) -> Metrics:
    """bertfit's validation metrics plus a caller's; on a name both give, bertfit's value is kept (the best epoch is
    chosen by it)."""
    if extra is None:
        return own

    def compute(pred: EvalPrediction) -> dict[str, Any]:
        metrics = own(pred)
        for key, value in extra(pred).items():
            metrics.setdefault(key, value)
        return metrics

    return compute


def _is_callback_class(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, TrainerCallback)


def _training_argument_names() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
