"""train(): labelled data -> a fine-tuned model folder, built on transformers.Trainer."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from bertfit.checks.checker import checked
from bertfit.config import RunConfig, TrainConfig, default_lr
from bertfit.data.cache import EpochSampler, LengthOrder, TokenizedData, TokenizedRows, split_rows, tokenize_labelled
from bertfit.data.io import check_folder_writable, default_file_mode, write_json
from bertfit.data.locks import WorkClaim, work_folder
from bertfit.data.paths import check_not_input, model_files
from bertfit.data.rows import DataSource
from bertfit.errors import ConfigError, DataError
from bertfit.evaluation import multilabel
from bertfit.evaluation.calibration import Calibration, fit_temperature, softmax
from bertfit.evaluation.card import model_card
from bertfit.evaluation.metrics import classification_report, trainer_metrics
from bertfit.evaluation.report import ScoredRows, write_multilabel_report, write_report
from bertfit.labels import LabelSchema
from bertfit.modeling import (
    BERTFIT_FILE,
    check_model_files,
    is_bertfit_model,
    library_versions,
    load_model_config,
    load_pretrained,
    pick_precision,
    resolve_model,
)
from bertfit.tokenization import aggregate_windows, load_tokenizer, usable_max_length
from bertfit.training.checkpoints import CommitCheckpoints, SaveEvery, complete_checkpoints, prepare_work, run_identity
from bertfit.training.losses import class_weights, training_loss
from bertfit.training.publish import publish, recover
from bertfit.training.tracking import JsonlLog, plot_training_curve, resolve_report_to, trim_log

LOG_FILE = "training_log.jsonl"
CURVE_FILE = "training_curve.png"
TENSORBOARD_DIR = "tensorboard"
REPORT_DIR = "report"
CHECKS_FILE = "checks.json"

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
    resumed_from_step: int | None = None  # the checkpoint an interrupted run continued from


def train(
    train_data: DataSource,
    output_dir: str | Path,
    validation: DataSource | None = None,
    config: RunConfig | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    cache_dir: str | Path | None = None,
    resume: bool | None = None,
    check: bool = True,
    **overrides: Any,
) -> TrainResult:
    """Fine-tune a pretrained encoder on labelled texts and write a Hugging Face model folder.

    Works the same under `torchrun` / `accelerate launch` (one process per device, DDP): the first process
    tokenizes and writes the model, the others wait for it.

    Args:
        train_data: a table file (csv, tsv, jsonl, parquet, h5, xlsx), a folder of such shards, or a DataFrame.
        output_dir: the model folder to write; it appears only once training has finished.
        validation: labelled data to pick the best epoch on; without it a stratified share is split off.
        config: a RunConfig (e.g. from `load_config`); keyword overrides such as `epochs=2` apply on top.
        overwrite: kept for old callers; has no effect. An existing bertfit model folder (or an empty folder) is
            replaced, any other folder is refused: bertfit never deletes files it did not write.
        progress: show progress bars (default: when stderr is a terminal).
        cache_dir: where tokenized data is kept (default: $BERTFIT_CACHE or ~/.cache/bertfit).
        resume: continue an interrupted run into the same output folder: None when possible, True or fail,
            False never (start over, deleting its checkpoints). A run whose settings differ from the interrupted
            one's (other than operational ones such as save_every or report_to) is refused, never started over.
        check: run `bertfit.check` on the training and validation data first (cached for unchanged inputs):
            errors stop the run, warnings are logged and saved with the model as checks.json.
    """
    started = time.time()
    cfg = (config or RunConfig()).override(overrides).validate()
    output_dir = Path(output_dir)
    source, base_name = resolve_model(cfg.model.model)
    check_not_input(output_dir, _files_read(train_data, validation, cfg, source), "--output folder")
    _check_output(output_dir)
    check_model_files(source)  # damaged base weights fail now, not after the data is checked and tokenized
    state = PartialState(cpu=not torch.cuda.is_available())
    work = work_folder(output_dir)
    claim = WorkClaim(work, output_dir) if state.is_main_process else None  # one run at a time per output
    try:
        if claim is not None:
            recover(work, output_dir)  # what a run killed while publishing its model left
        return _train(train_data, validation, cfg, output_dir, source, base_name, state, progress, cache_dir,
                      resume, check, started)  # fmt: skip
    finally:
        if claim is not None:
            claim.release()


def _train(
    train_data: DataSource,
    validation: DataSource | None,
    cfg: RunConfig,
    output_dir: Path,
    source: str,
    base_name: str,
    state: PartialState,
    progress: bool | None,
    cache_dir: str | Path | None,
    resume: bool | None,
    check: bool,
    started: float,
) -> TrainResult:
    """train() in the work folder it holds: check, tokenize, fit (or continue), score, stage and publish."""
    work = work_folder(output_dir)
    progress = sys.stderr.isatty() if progress is None else progress
    set_seed(cfg.train.seed)

    tokenizer = load_tokenizer(source, cfg.model.trust_remote_code)
    max_length = usable_max_length(cfg.data.max_length, tokenizer, load_model_config(source, cfg.model))
    with state.main_process_first():  # one process checks and tokenizes; the others then read its caches
        checks = checked(train_data, validation, cfg, cache_dir, progress and state.is_main_process) if check else None
        train_ds, val_ds, schema = load_train_and_validation(
            train_data, validation, cfg, tokenizer, max_length, cache_dir, progress and state.is_main_process
        )
    model, _, _ = load_pretrained(cfg.model, schema)
    if schema.multi_label:
        multilabel.start_at_base_rates(model, train_ds.labels)
    if cfg.train.lr is None:
        steps = planned_steps(cfg.train, len(train_ds))
        cfg.train.lr = default_lr(steps)
        logger.info("learning rate %g (the default for a run of %d optimizer steps)", cfg.train.lr, steps)

    precision = pick_precision(cfg.train.precision)
    run = _run_identity(cfg, base_name, train_ds, val_ds, state.num_processes, precision, max_length)
    with state.main_process_first():
        if state.is_main_process:
            checkpoint = prepare_work(work, run, cfg.train.patience, resume, output_dir)
        else:
            checkpoint = _peek_resume(work)
    resumed = int(checkpoint.name.split("-")[-1]) if checkpoint is not None else None
    if resumed is not None and state.is_main_process:  # the first process alone writes the log
        trim_log(work / LOG_FILE, resumed)
    trainer = _trainer(cfg, model, tokenizer, train_ds, val_ds, schema, work, precision, progress, started)
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    rows = _scored_validation(trainer, val_ds, tokenizer, schema, cfg.data.aggregate)
    calibration, thresholds, held_out = None, None, None
    if schema.multi_label:
        thresholds, held_out = _thresholds(cfg.train.thresholds, rows)
        metrics = multilabel.report(rows.labels, rows.proba, thresholds, schema.names, held_out)
    else:
        calibration = fit_temperature(rows.logits, rows.labels)
        logger.info("calibration: temperature %.3f, %s", calibration.temperature, calibration.reason)
        metrics = classification_report(rows.labels, rows.proba.argmax(-1), schema.names)
    metrics["history"] = [e for e in trainer.state.log_history if "eval_loss" in e]
    trainer.save_model(str(work / "model"))  # model.safetensors, config.json (id2label), tokenizer files
    if state.is_main_process:
        meta = _meta(cfg, schema, base_name, max_length, precision, train_ds, val_ds, output.metrics)
        meta.update(processes=state.num_processes, resumed_from_step=resumed)
        meta["calibration"] = calibration.to_dict() if calibration else None
        if thresholds is not None:
            meta["thresholds"] = {"how": cfg.train.thresholds, "values": dict(zip(schema.names, thresholds.tolist()))}
        meta["checks"] = {k: checks[k] for k in ("errors", "warnings")} if checks else None
        if checks:
            write_json(checks, work / "model" / CHECKS_FILE)
        _save(work, meta, metrics, rows, calibration, thresholds, held_out)
        publish(work, output_dir)  # the output holds the old model or the new one, whole, whenever it is killed
        logger.info("model written to %s", output_dir)
    state.wait_for_everyone()
    return TrainResult(
        output_dir,
        metrics,
        schema.names,
        len(train_ds),
        len(val_ds),
        float(output.metrics.get("train_runtime", 0)),
        resumed,
    )


def load_train_and_validation(
    train_data: DataSource,
    validation: DataSource | None,
    cfg: RunConfig,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> tuple[TokenizedRows, TokenizedRows, LabelSchema]:
    """Tokenized training and validation rows (given, or a stratified split) and the label schema seen in training."""
    train_data, schema = tokenize_labelled(
        train_data, cfg.data, tokenizer, max_length, cache_dir, role="training", progress=progress
    )
    if schema.multi_label and not cfg.data.multi_label:  # a column of lists: validation data is read the same way
        cfg.data.multi_label = True
        logger.info("%s: the label column holds sets of labels; training a multi-label model", train_data.source)
    if schema.multi_label and cfg.train.best_metric == "mcc":
        raise ConfigError("best_metric mcc is for one label per text; for multi-label use macro_f1 or micro_f1")
    if validation is not None:
        known = f"the training data ({train_data.source})"
        val_data, _ = tokenize_labelled(
            validation, cfg.data, tokenizer, max_length, cache_dir, schema, "validation", known, progress
        )
        train_ds, val_ds = TokenizedRows(train_data), TokenizedRows(val_data)
    else:
        train_rows, val_rows = split_rows(
            train_data.labels,
            cfg.data.val_fraction,
            cfg.data.val_max_rows,
            cfg.train.seed,
            train_data.source,
            train_data.docs,
        )
        train_ds, val_ds = TokenizedRows(train_data, train_rows), TokenizedRows(train_data, val_rows)
    _report_truncation(train_data, max_length)
    if train_data.docs is not None:
        logger.info("%s: %d documents make %d windows of up to %d tokens (stride %d)", train_data.source,
                    train_data.n_docs, len(train_data), max_length, cfg.data.window_stride)  # fmt: skip
    logger.info("training on %d rows, validating on %d rows, %d labels", len(train_ds), len(val_ds), len(schema))
    return train_ds, val_ds, schema


def _trainer(
    cfg: RunConfig,
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    train_ds: TokenizedRows,
    val_ds: TokenizedRows,
    schema: LabelSchema,
    work: Path,
    precision: str,
    progress: bool,
    started: float,
) -> BertfitTrainer:
    report_to = resolve_report_to(cfg.train.report_to)
    callbacks: list[TrainerCallback] = [
        EpochLogger(step_lines=not progress),
        JsonlLog(work / LOG_FILE, started),
        SaveEvery(cfg.train.save_every),
        CommitCheckpoints(cfg.train.keep_checkpoints),
    ]
    if "tensorboard" in report_to:  # into the work folder (then the model folder), not Trainer's default place
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        report_to.remove("tensorboard")
        callbacks.append(TensorBoardCallback(SummaryWriter(log_dir=str(work / TENSORBOARD_DIR))))
    if cfg.train.patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.train.patience))
    weights = class_weights(cfg.train.class_weights, train_ds.labels, schema)
    val_docs = val_ds.docs[LengthOrder(val_ds.lengths).order] if val_ds.docs is not None else None
    trainer = BertfitTrainer(
        scheduler=cfg.train.scheduler,
        group_by_length=cfg.train.group_by_length,
        model=model,
        args=training_arguments(cfg.train, work / "checkpoints", precision, len(train_ds), progress, report_to),
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if torch.cuda.is_available() else None),
        compute_metrics=trainer_metrics(len(schema), schema.multi_label, val_docs, cfg.data.aggregate),
        compute_loss_func=training_loss(schema, weights),
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # raw metric dicts; EpochLogger prints readable lines instead
    return trainer


def _peek_resume(work: Path) -> Path | None:
    """What the main process chose (other DDP processes ask after it has prepared the work folder)."""
    done = complete_checkpoints(work / "checkpoints")
    return done[-1] if done else None


def _run_identity(
    cfg: RunConfig,
    base_name: str,
    train_ds: TokenizedRows,
    val_ds: TokenizedRows,
    processes: int,
    precision: str,
    max_length: int,
) -> dict[str, Any]:
    """What must match for a checkpoint to be continued: the settings that change the result, as resolved for this
    run, the data (token caches are keyed by the files' identity and the tokenization), base model, process count."""
    weights = cfg.train.class_weights
    if weights not in ("none", "auto"):  # a file: what it says, not where it is
        weights = "sha256:" + hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    return run_identity(
        cfg,
        base_model=base_name,
        precision=precision,
        max_length=max_length,
        class_weights=weights,
        train_data=train_ds.data.folder.name,
        val_data=val_ds.data.folder.name,
        rows=[len(train_ds), len(val_ds)],
        processes=processes,
    )


def training_arguments(
    cfg: TrainConfig, out: Path, precision: str, n_train: int, progress: bool, report_to: list[str] | None = None
) -> TrainingArguments:
    """TrainingArguments from bertfit's settings: epoch-wise evaluation, best model restored at the end.

    Checkpoints are also asked for by SaveEvery and pruned by CommitCheckpoints, so Trainer keeps all it writes.
    """
    steps_per_epoch = epoch_steps(cfg, n_train)
    on_gpu = torch.cuda.is_available()
    return TrainingArguments(
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
        use_cpu=not on_gpu,
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


def epoch_steps(cfg: TrainConfig, n_train: int) -> int:
    """Optimizer steps per epoch, counting every process of a DDP run."""
    world = max(1, int(os.environ.get("WORLD_SIZE", "1")))
    return max(1, math.ceil(n_train / (cfg.batch_size * cfg.grad_accum * world)))


def planned_steps(cfg: TrainConfig, n_train: int) -> int:
    """Optimizer steps the run will take: --max-steps, or every epoch."""
    return cfg.max_steps or math.ceil(cfg.epochs * epoch_steps(cfg, n_train))


class BertfitTrainer(Trainer):
    """Trainer with bertfit's samplers (a global shuffle per epoch, lengths read from the cache), its loss (see
    `losses.training_loss`) and an optional exponential learning-rate decay after warmup."""

    # The loss from compute_loss_func is already divided by the label count of the whole optimizer step.
    loss_is_scaled_for_ga = True

    def __init__(self, *args: Any, scheduler: str = "linear", group_by_length: bool = True, **kwargs: Any) -> None:
        self.decay = scheduler
        self.group_by_length = group_by_length
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


def _files_read(train_data: DataSource, validation: DataSource | None, cfg: RunConfig, source: str) -> list[Any]:
    """What a run reads from disk, which its output folder must not replace: data, class weights, base model."""
    weights = cfg.train.class_weights if cfg.train.class_weights not in ("none", "auto") else None
    return [train_data, validation, weights, *model_files(source)]


def _check_output(output_dir: Path) -> None:
    """The output is replaced whole when the model is published: refuse, before any work, what must not be."""
    if output_dir.name in ("", ".", "..") or _holds_working_folder(output_dir):
        raise DataError(
            f"{output_dir}: the output is the current folder (or a folder above it), which the model folder would "
            "replace; name a new folder, e.g. -o model"
        )
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"{output_dir}: exists and is a file; choose another --output folder")
    found = sorted(p.name for p in output_dir.iterdir()) if output_dir.is_dir() else []
    if found and not is_bertfit_model(output_dir):
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise DataError(
            f"{output_dir}: folder exists and is not a bertfit model (it holds {shown}); bertfit replaces only its "
            "own model folders (with bertfit.json) or an empty folder, even with --overwrite; choose another --output"
        )
    check_folder_writable(output_dir)  # missing, a file, or read-only: fail now, not after training


def _holds_working_folder(output_dir: Path) -> bool:
    here, target = Path.cwd().resolve(), output_dir.resolve()
    return target == here or target in here.parents


def _report_truncation(data: TokenizedData, max_length: int) -> None:
    if data.truncated:
        logger.warning(
            "%d of %d training texts (%.1f%%) are cut at max_length %d tokens; raise --max-length to keep more",
            data.truncated,
            len(data),
            100 * data.truncated / max(1, len(data)),
            max_length,
        )


def _meta(
    cfg: RunConfig,
    schema: LabelSchema,
    base_name: str,
    max_length: int,
    precision: str,
    train_ds: TokenizedRows,
    val_ds: TokenizedRows,
    train_metrics: dict[str, Any],
) -> dict[str, Any]:
    return {
        "format": 1,
        "base_model": base_name,
        "labels": schema.to_dict(),
        "data": {
            "text_cols": cfg.data.text_cols,
            "label_col": cfg.data.label_col,
            "max_length": max_length,
            "pair_col": cfg.data.pair_col,
            "long": cfg.data.long,
            "stride": cfg.data.window_stride,
            "aggregate": cfg.data.aggregate,
        },
        "config": cfg.to_dict(),
        "precision": precision,
        "train_rows": len(train_ds),
        "val_rows": len(val_ds),
        "dropped": {k: v for k, v in train_ds.data.dropped.items() if v},
        "train_runtime_s": train_metrics.get("train_runtime"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
    }


def _scored_validation(
    trainer: Trainer,
    val_ds: TokenizedRows,
    tokenizer: PreTrainedTokenizerBase,
    schema: LabelSchema,
    aggregate: str = "mean",
) -> ScoredRows:
    """The best model's logits on the validation rows, with what the report needs (lengths, texts).

    Trainer visits validation rows longest first (LengthOrder; under DDP the gathered batches keep that order), so
    the labels come from Trainer's output; texts are shown only when its labels match that order, as decoded tokens.
    Sliding windows are aggregated into one row per document.
    """
    pred = trainer.predict(val_ds)
    logits = np.asarray(pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions, np.float64)
    labels = np.asarray(pred.label_ids)
    order = LengthOrder(val_ds.lengths).order
    known = len(order) == len(labels) and np.array_equal(val_ds.labels[order], labels)
    lengths = val_ds.lengths[order] if known else np.zeros(len(labels), dtype=np.int32)
    if known and val_ds.docs is not None:  # rows are windows: one row per document, shown by its first window
        _, first, index = np.unique(val_ds.docs[order], return_index=True, return_inverse=True)
        logits, labels = aggregate_windows(logits, index, len(first), aggregate), labels[first]
        lengths = np.bincount(index, weights=lengths).astype(np.int64)
        order = order[first]
    labels = labels.astype(np.int64)

    def texts(idx: np.ndarray) -> list[str]:
        if not known:
            return ["(text not available)"] * len(idx)
        ids = [val_ds[int(order[i])]["input_ids"] for i in idx]
        return tokenizer.batch_decode(ids, skip_special_tokens=True)

    proba = multilabel.sigmoid(logits) if schema.multi_label else softmax(logits)
    return ScoredRows(labels, proba, lengths, texts, list(schema.names), logits)


def _thresholds(how: str, rows: ScoredRows) -> tuple[np.ndarray, np.ndarray | None]:
    """Multi-label decision thresholds: tuned per label on the validation rows, with each row's thresholds tuned on
    the other half of the rows to score it with (cross-fitting); or 0.5 for every label (nothing tuned)."""
    if how == "global":
        return np.full(len(rows.names), multilabel.DEFAULT_THRESHOLD), None
    thresholds, held_out = multilabel.cross_fitted_thresholds(rows.labels, rows.proba)
    logger.info("thresholds tuned on %d validation rows: %s", len(rows.labels),
                ", ".join(f"{n} {t:.2f}" for n, t in zip(rows.names, thresholds)))  # fmt: skip
    return thresholds, held_out


def _save(
    work: Path,
    meta: dict[str, Any],
    metrics: dict[str, Any],
    rows: ScoredRows,
    calibration: Calibration | None,
    thresholds: np.ndarray | None = None,
    held_out: np.ndarray | None = None,
) -> None:
    """bertfit's files beside the weights Trainer saved in work/model: metrics, card, logs, curve, the validation
    report (report/report.html with its plots), bertfit.json."""
    folder = work / "model"
    (folder / "training_args.bin").unlink(missing_ok=True)  # a pickle; bertfit.json records the settings
    if (work / LOG_FILE).is_file():
        shutil.copyfile(work / LOG_FILE, folder / LOG_FILE)
        plot_training_curve(folder / LOG_FILE, folder / CURVE_FILE, meta["config"]["train"]["best_metric"])
    if thresholds is not None:
        numbers = write_multilabel_report(
            folder / REPORT_DIR, rows, thresholds, "Validation report", folder / CURVE_FILE, held_out
        )
    else:
        numbers = write_report(folder / REPORT_DIR, rows, calibration, "Validation report", folder / CURVE_FILE)
    metrics.update({k: v for k, v in numbers.items() if k not in metrics})
    metrics["report"] = {**numbers["report"], "folder": REPORT_DIR}
    write_json(metrics, folder / "metrics.json")
    (folder / "README.md").write_text(model_card(meta, metrics), encoding="utf-8")
    if (work / TENSORBOARD_DIR).is_dir():
        shutil.copytree(work / TENSORBOARD_DIR, folder / TENSORBOARD_DIR)
    mode = default_file_mode()  # safetensors writes the weights private (0600); a model folder is meant to be shared
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(mode)
    write_json(meta, folder / BERTFIT_FILE)  # written last: its presence marks a complete model folder
