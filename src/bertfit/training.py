"""train(): labelled data -> a fine-tuned model folder, built on transformers.Trainer."""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from transformers import (
    DataCollatorWithPadding,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from .checks import DataSource, LabelledData, load_labelled
from .config import RunConfig, TrainConfig
from .errors import DataError
from .evaluation import classification_report, model_card, trainer_metrics
from .io import write_json
from .labels import LabelSchema
from .modeling import BERTFIT_FILE, is_bertfit_model, library_versions, load_pretrained, pick_precision
from .tokenization import EncodedDataset, encode, load_tokenizer, usable_max_length

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What train() produced: the model folder, its validation report and its labels."""

    model_dir: Path
    metrics: dict[str, Any]
    labels: list[str]
    train_rows: int
    val_rows: int
    train_seconds: float


def train(
    train_data: DataSource,
    output_dir: str | Path,
    validation: DataSource | None = None,
    config: RunConfig | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    **overrides: Any,
) -> TrainResult:
    """Fine-tune a pretrained encoder on labelled texts and write a Hugging Face model folder.

    Args:
        train_data: a table file (csv, tsv, jsonl, parquet, h5, xlsx) or a pandas DataFrame.
        output_dir: the model folder to write; it appears only once training has finished.
        validation: labelled data to pick the best epoch on; without it a stratified share is split off.
        config: a RunConfig (e.g. from `load_config`); keyword overrides such as `epochs=2` apply on top.
        overwrite: replace an existing folder that is not a bertfit model.
        progress: show progress bars (default: when stderr is a terminal).
    """
    cfg = (config or RunConfig()).override(overrides).validate()
    output_dir = Path(output_dir)
    _check_output(output_dir, overwrite)
    progress = sys.stderr.isatty() if progress is None else progress
    set_seed(cfg.train.seed)

    train_set, val_set, schema = load_train_and_validation(train_data, validation, cfg)

    model, source, base_name = load_pretrained(cfg.model, schema)
    tokenizer = load_tokenizer(source, cfg.model.trust_remote_code)
    max_length = usable_max_length(cfg.data.max_length, tokenizer, model.config)
    train_ds = EncodedDataset(encode(tokenizer, train_set.texts, max_length), train_set.labels)
    val_ds = EncodedDataset(encode(tokenizer, val_set.texts, max_length), val_set.labels)
    _report_truncation(train_ds, max_length)

    work = output_dir.parent / f".{output_dir.name}.bertfit-work"
    shutil.rmtree(work, ignore_errors=True)
    precision = pick_precision(cfg.train.precision)
    args = training_arguments(cfg.train, work / "checkpoints", precision, len(train_ds), progress)
    trainer = BertfitTrainer(
        scheduler=cfg.train.scheduler,
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if torch.cuda.is_available() else None),
        compute_metrics=trainer_metrics(len(schema)),
        callbacks=[EpochLogger(step_lines=not progress)],
    )
    trainer.remove_callback(PrinterCallback)  # raw metric dicts; EpochLogger prints readable lines instead
    output = trainer.train()

    # Trainer may visit validation rows length-grouped, so take labels from its output, not val_set's order.
    pred = trainer.predict(val_ds)
    metrics = classification_report(pred.label_ids, np.asarray(pred.predictions).argmax(-1), schema.names)
    metrics["history"] = [e for e in trainer.state.log_history if "eval_loss" in e]
    meta = _meta(cfg, schema, base_name, max_length, precision, train_set, val_set, output.metrics)
    _save(trainer, work / "model", meta, metrics)
    _publish(work / "model", output_dir)
    shutil.rmtree(work, ignore_errors=True)
    logger.info("model written to %s", output_dir)
    return TrainResult(
        output_dir,
        metrics,
        schema.names,
        len(train_set),
        len(val_set),
        float(output.metrics.get("train_runtime", 0)),
    )


def load_train_and_validation(
    train_data: DataSource, validation: DataSource | None, cfg: RunConfig
) -> tuple[LabelledData, LabelledData, LabelSchema]:
    """Training rows, validation rows (given, or a stratified split) and the label schema seen in training."""
    train_set, schema = load_labelled(train_data, cfg.data, role="training")
    if validation is not None:
        known = f"the training data ({train_set.source})"
        val_set, _ = load_labelled(validation, cfg.data, schema=schema, role="validation", known_from=known)
    else:
        train_set, val_set = split_validation(train_set, cfg.data.val_fraction, cfg.train.seed)
    logger.info("training on %d rows, validating on %d rows, %d labels", len(train_set), len(val_set), len(schema))
    return train_set, val_set, schema


def training_arguments(cfg: TrainConfig, out: Path, precision: str, n_train: int, progress: bool) -> TrainingArguments:
    """TrainingArguments from bertfit's settings: epoch-wise evaluation, best model restored at the end."""
    steps_per_epoch = math.ceil(n_train / (cfg.batch_size * cfg.grad_accum))
    on_gpu = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(out),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup,  # a float below 1 is a share of all steps
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model=f"eval_{cfg.best_metric}",
        greater_is_better=cfg.best_metric != "loss",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not on_gpu,
        seed=cfg.seed,
        data_seed=cfg.seed,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        logging_strategy="steps",
        logging_steps=max(1, steps_per_epoch // 5),
        report_to=[],
        disable_tqdm=not progress,
        dataloader_num_workers=0,
    )


class BertfitTrainer(Trainer):
    """Trainer plus one documented seam: an exponential learning-rate decay after warmup."""

    def __init__(self, *args: Any, scheduler: str = "linear", **kwargs: Any) -> None:
        self.decay = scheduler
        super().__init__(*args, **kwargs)

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
        if self.decay != "exponential":
            return super().create_scheduler(num_training_steps, optimizer)
        warmup = self.args.get_warmup_steps(num_training_steps)
        decay_steps = max(1, num_training_steps - warmup)
        gamma = 0.01 ** (1.0 / decay_steps)  # the learning rate ends at 1% of its peak

        def factor(step: int) -> float:
            return (step + 1) / max(1, warmup) if step < warmup else gamma ** (step - warmup)

        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, factor)
        return self.lr_scheduler


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


def split_validation(data: LabelledData, fraction: float, seed: int) -> tuple[LabelledData, LabelledData]:
    """Split off a validation share, stratified by label when every label has at least two rows."""
    n_labels = len(np.unique(data.labels))
    n_val = math.ceil(len(data) * fraction)
    if len(data) - n_val < 2:
        raise DataError(f"{data.source}: only {len(data)} usable rows; too few to split off validation rows")
    counts = np.bincount(data.labels)
    stratify = data.labels if counts[counts > 0].min() >= 2 and n_val >= n_labels else None
    if stratify is None:
        logger.warning(
            "%s: some labels are too rare to stratify the validation split; splitting at random", data.source
        )
    idx_train, idx_val = train_test_split(np.arange(len(data)), test_size=n_val, random_state=seed, stratify=stratify)

    def subset(idx: np.ndarray, role: str) -> LabelledData:
        return LabelledData([data.texts[i] for i in idx], data.labels[idx], f"{data.source} ({role})", data.dropped)

    return subset(idx_train, "train split"), subset(idx_val, "validation split")


def _check_output(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"{output_dir}: exists and is a file; choose another --output folder")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not is_bertfit_model(output_dir) and not overwrite:
        raise DataError(
            f"{output_dir}: folder exists and is not a bertfit model; choose another --output or pass --overwrite"
        )
    if not output_dir.parent.exists():
        raise DataError(f"{output_dir}: parent folder {output_dir.parent} does not exist; create it first")


def _report_truncation(ds: EncodedDataset, max_length: int) -> None:
    lengths = np.asarray(ds.lengths())
    cut = int((lengths >= max_length).sum())
    if cut:
        logger.warning(
            "%d of %d training texts (%.1f%%) are cut at max_length %d tokens; raise --max-length to keep more",
            cut,
            len(lengths),
            100 * cut / len(lengths),
            max_length,
        )


def _meta(
    cfg: RunConfig,
    schema: LabelSchema,
    base_name: str,
    max_length: int,
    precision: str,
    train_set: LabelledData,
    val_set: LabelledData,
    train_metrics: dict[str, Any],
) -> dict[str, Any]:
    return {
        "format": 1,
        "base_model": base_name,
        "labels": schema.to_dict(),
        "data": {"text_cols": cfg.data.text_cols, "label_col": cfg.data.label_col, "max_length": max_length},
        "config": cfg.to_dict(),
        "precision": precision,
        "train_rows": len(train_set),
        "val_rows": len(val_set),
        "dropped": train_set.dropped,
        "train_runtime_s": train_metrics.get("train_runtime"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
    }


def _save(trainer: Trainer, folder: Path, meta: dict[str, Any], metrics: dict[str, Any]) -> None:
    trainer.save_model(str(folder))  # model.safetensors, config.json (id2label), tokenizer files
    (folder / "training_args.bin").unlink(missing_ok=True)  # a pickle; bertfit.json records the settings
    write_json(metrics, folder / "metrics.json")
    (folder / "README.md").write_text(model_card(meta, metrics), encoding="utf-8")
    write_json(meta, folder / BERTFIT_FILE)  # written last: its presence marks a complete model folder


def _publish(staged: Path, output_dir: Path) -> None:
    """Move the finished folder into place; an existing folder is swapped out only after that succeeds."""
    old = None
    if output_dir.exists():
        old = output_dir.parent / f".{output_dir.name}.old-{os.getpid()}"
        os.replace(output_dir, old)
    os.replace(staged, output_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
