"""bertfit's transformers.Trainer: its arguments, samplers, learning-rate schedule and callbacks."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from bertfit.config import TrainConfig
from bertfit.data.cache import TokenizedRows
from bertfit.errors import ConfigError
from bertfit.evaluation.metrics import trainer_metrics
from bertfit.labels import LabelSchema
from bertfit.training.checkpoints import CommitCheckpoints, SaveEvery
from bertfit.training.extensions import merged_metrics
from bertfit.training.job import Job
from bertfit.training.layers import decayed_groups
from bertfit.training.losses import class_weights, training_loss
from bertfit.training.sampling import EpochSampler, LengthOrder
from bertfit.training.tracking import JsonlLog, resolve_report_to

LOG_FILE = "training_log.jsonl"
TENSORBOARD_DIR = "tensorboard"

logger = logging.getLogger(__name__)


def build_trainer(
    job: Job,
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    train_ds: TokenizedRows,
    val_ds: TokenizedRows,
    schema: LabelSchema,
    precision: str,
    recorder: TrainerCallback | None = None,
) -> BertfitTrainer:
    """The Trainer of one run: bertfit's arguments, loss, metrics and callbacks (with `recorder`, the training
    dynamics), then the caller's."""
    cfg = job.cfg
    report_to = resolve_report_to(cfg.train.report_to)
    callbacks = _callbacks(job, report_to, recorder)
    args = training_arguments(cfg.train, job.work / "checkpoints", precision, len(train_ds), job.progress, report_to,
                              job.extensions.trainer_args)  # fmt: skip
    val_docs = val_ds.docs[LengthOrder(val_ds.lengths).order] if val_ds.docs is not None else None
    metrics = trainer_metrics(len(schema), schema.multi_label, val_docs, cfg.data.aggregate)
    trainer = BertfitTrainer(
        scheduler=cfg.train.scheduler,
        group_by_length=cfg.train.group_by_length,
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if torch.cuda.is_available() else None),
        compute_metrics=merged_metrics(metrics, job.extensions.compute_metrics),
        compute_loss_func=training_loss(
            schema, class_weights(cfg.train.class_weights, train_ds.labels, schema), cfg.train.label_smoothing
        ),
        layer_decay=cfg.train.layer_decay,
        callbacks=callbacks + job.extensions.callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # raw metric dicts; EpochLogger prints readable lines instead
    return trainer


def _callbacks(job: Job, report_to: list[str], recorder: TrainerCallback | None) -> list[TrainerCallback]:
    """bertfit's callbacks: readable log lines, the JSON-lines log, the training dynamics, checkpoints, TensorBoard,
    early stopping. A "tensorboard" in `report_to` is replaced by a callback that writes into the work folder."""
    train = job.cfg.train
    callbacks: list[TrainerCallback] = [
        EpochLogger(step_lines=not job.progress),
        JsonlLog(job.work / LOG_FILE, job.started),
        SaveEvery(train.save_every),
        *([recorder] if recorder is not None else []),  # saves into a checkpoint before it is marked complete
        CommitCheckpoints(train.keep_checkpoints),
    ]
    if "tensorboard" in report_to:  # into the work folder (then the model folder), not Trainer's default place
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        report_to.remove("tensorboard")
        callbacks.append(TensorBoardCallback(SummaryWriter(log_dir=str(job.work / TENSORBOARD_DIR))))
    if train.patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=train.patience))
    return callbacks


def training_arguments(
    cfg: TrainConfig,
    out: Path,
    precision: str,
    n_train: int,
    progress: bool,
    report_to: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> TrainingArguments:
    """TrainingArguments from bertfit's settings: epoch-wise evaluation, best model restored at the end; `extra`
    (a caller's trainer_args, checked by extensions.check_trainer_arg) overrides them.

    Checkpoints are also asked for by SaveEvery and pruned by CommitCheckpoints, so Trainer keeps all it writes.
    """
    steps_per_epoch = epoch_steps(cfg, n_train)
    values = dict(
        output_dir=str(out),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup,  # a float below 1 is a share of all steps
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=None,
        load_best_model_at_end=True,
        metric_for_best_model=f"eval_{cfg.best_metric}",
        greater_is_better=cfg.best_metric != "loss",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_strategy="steps",
        logging_steps=max(1, min(50, steps_per_epoch // 5)),
        logging_first_step=True,
        report_to=report_to or [],
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        average_tokens_across_devices=True,  # the loss divides by the step's label count over every process
    )
    values.update(extra or {})
    try:
        return TrainingArguments(**values)
    except (TypeError, ValueError) as e:
        if not extra:
            raise
        raise ConfigError(f"trainer_args: {str(e).strip().splitlines()[0]}") from None


def epoch_steps(cfg: TrainConfig, n_train: int) -> int:
    """Optimizer steps per epoch, counting every process of a DDP run."""
    world = max(1, int(os.environ.get("WORLD_SIZE", "1")))
    return max(1, math.ceil(n_train / (cfg.batch_size * cfg.grad_accum * world)))


def planned_steps(cfg: TrainConfig, n_train: int) -> int:
    """Optimizer steps the run will take: --max-steps, or every epoch."""
    return cfg.max_steps or math.ceil(cfg.epochs * epoch_steps(cfg, n_train))


class BertfitTrainer(Trainer):
    """Trainer with bertfit's samplers (a global shuffle per epoch, lengths read from the cache), its loss (see
    `losses.training_loss`), optional layer-wise learning-rate decay and an optional exponential learning-rate
    decay after warmup."""

    # The loss from compute_loss_func is already divided by the label count of the whole optimizer step.
    loss_is_scaled_for_ga = True

    def __init__(
        self,
        *args: Any,
        scheduler: str = "linear",
        group_by_length: bool = True,
        layer_decay: float = 1.0,
        **kwargs: Any,
    ) -> None:
        self.decay = scheduler
        self.group_by_length = group_by_length
        self.layer_decay = layer_decay
        super().__init__(*args, **kwargs)
        # The model computes no loss here (compute_loss_func does), so it is not handed num_items_in_batch.
        self.model_accepts_loss_kwargs = False

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        # Rows are grouped by length into whole optimizer steps, which the loader then cuts into per-device batches
        # (accumulated in turn, or dealt to the processes in turn): the same rows make each step whether it is one
        # batch of 16, 2 accumulated batches of 8 or a batch of 8 on each of 2 processes.
        args = self.args
        step_rows = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        return EpochSampler(dataset.lengths, step_rows, args.seed, self.group_by_length)

    def _get_eval_sampler(self, eval_dataset: Any) -> torch.utils.data.Sampler:
        return LengthOrder(eval_dataset.lengths)

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        if self.layer_decay == 1.0 or self.optimizer is not None:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        no_decay = set(dict(model.named_parameters())) - set(self.get_decay_parameter_names(model))
        groups = decayed_groups(model, self.args.learning_rate, self.layer_decay, self.args.weight_decay, no_decay)
        self.optimizer = optimizer_cls(groups, **kwargs)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
        if self.decay != "exponential":
            return super().create_scheduler(num_training_steps, optimizer)
        warmup = self.args.get_warmup_steps(num_training_steps)
        self.lr_scheduler = exponential_schedule(optimizer or self.optimizer, warmup, num_training_steps)
        return self.lr_scheduler


def exponential_schedule(optimizer: Any, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to the peak over `warmup` steps, then a constant factor per step, to 1% of the peak after the
    last of `total` steps.

    Written here because no transformers scheduler decays geometrically: get_scheduler's decaying types are linear,
    cosine (with restarts, or to a min_lr), polynomial ((1 - progress) ** power to lr_end), inverse square root and
    warmup-stable-decay (linear, cosine or 1-sqrt), and torch's ExponentialLR has no warmup of its own.
    """
    gamma = 0.01 ** (1.0 / max(1, total - warmup))

    def factor(step: int) -> float:
        return (step + 1) / max(1, warmup) if step < warmup else gamma ** (step - warmup)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class EpochLogger(TrainerCallback):
    """Readable lines through the logging module (the CLI decides whether they show): one per evaluation, and,
    when no progress bar is drawn, the training loss a few times per epoch so that logs show the run is alive."""

    def __init__(self, step_lines: bool) -> None:
        self.step_lines = step_lines

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any):
        if self.step_lines and logs and "loss" in logs:
            logger.info("step %d/%d: training loss %.4f", state.global_step, state.max_steps, logs["loss"])

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kw: Any):
        if not metrics or state.epoch is None:
            return
        shown = ", ".join(
            f"{k[5:]} {v:.4f}" for k, v in metrics.items() if k[5:] in ("loss", "accuracy", "macro_f1", "mcc")
        )
        logger.info("epoch %.0f/%.0f: validation %s", state.epoch, args.num_train_epochs, shown)
