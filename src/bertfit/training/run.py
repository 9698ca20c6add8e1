"""train(): labelled data -> a fine-tuned model folder, built on transformers.Trainer.

The pipeline: check the data -> tokenize it -> build the Trainer -> fit (or continue an interrupted fit) ->
finalize (calibration or thresholds, validation report, model card: training/finalize.py) -> publish the folder.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from transformers import PreTrainedTokenizerBase, TrainerCallback, set_seed

from bertfit.checks.checker import checked
from bertfit.config import DEFAULT_EPOCHS, MIN_STEPS, RunConfig, default_epochs, default_lr
from bertfit.data.cache import TokenizedData, TokenizedRows, split_rows, tokenize_labelled
from bertfit.data.locks import WorkClaim, work_folder
from bertfit.data.paths import check_not_input, model_files
from bertfit.data.rows import DataSource
from bertfit.data.write import check_folder_writable
from bertfit.errors import ConfigError, DataError
from bertfit.evaluation import multilabel
from bertfit.labels import LabelSchema
from bertfit.modeling import (
    check_model_files,
    is_bertfit_model,
    load_model_config,
    load_pretrained,
    pick_precision,
    resolve_model,
)
from bertfit.tokenization import load_tokenizer, usable_max_length
from bertfit.training import layers
from bertfit.training.checkpoints import complete_checkpoints, prepare_work, run_identity
from bertfit.training.dynamics import DYNAMICS_FILE, Dynamics, check_columns, recorder_for, write_dynamics
from bertfit.training.extensions import Extensions, Metrics
from bertfit.training.finalize import model_meta, score, stage
from bertfit.training.job import Job
from bertfit.training.publish import publish, recover
from bertfit.training.tracking import trim_log
from bertfit.training.trainer import LOG_FILE, build_trainer, epoch_steps, planned_steps

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
    dynamics: Dynamics | None = None  # with record_dynamics, each training row's figures (first process only)


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
    callbacks: Sequence[TrainerCallback | type[TrainerCallback]] | None = None,
    compute_metrics: Metrics | None = None,
    trainer_args: dict[str, Any] | None = None,
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
        callbacks: `transformers.TrainerCallback` instances or classes, run after bertfit's own.
        compute_metrics: a function of a `transformers.EvalPrediction` (validation logits and label ids; one row
            per window with long="window") returning a dict: merged into each epoch's evaluation (`eval_<name>`)
            and, on the best model, into the result's metrics; bertfit's value wins a name both give.
        trainer_args: `transformers.TrainingArguments` values that override bertfit's, e.g.
            `{"lr_scheduler_type": "cosine"}`. Refused: names TrainingArguments lacks, those set from a bertfit
            setting (pass lr, batch_size, epochs... instead) and those bertfit needs (output_dir, eval_strategy...).
            They change the result, so they join the resume identity (callbacks and compute_metrics, being code,
            cannot) and are recorded in bertfit.json.
    """
    started = time.time()
    cfg = (config or RunConfig()).override(overrides).validate()
    extensions = Extensions.checked(callbacks, compute_metrics, trainer_args, cfg.train.scheduler)
    job = _job(cfg, Path(output_dir), train_data, validation, progress, cache_dir, started, extensions)
    claim = WorkClaim(job.work, job.output_dir) if job.main else None  # one run at a time per output
    try:
        if claim is not None:
            recover(job.work, job.output_dir)  # what a run killed while publishing its model left
        return _train(job, train_data, validation, resume, check)
    finally:
        if claim is not None:
            claim.release()


def _job(
    cfg: RunConfig,
    output_dir: Path,
    train_data: DataSource,
    validation: DataSource | None,
    progress: bool | None,
    cache_dir: str | Path | None,
    started: float,
    extensions: Extensions,
) -> Job:
    """The run's facts, after refusing, before any work, an output that must not be replaced or a damaged base."""
    if cfg.train.record_dynamics:
        check_columns(cfg.data)
    source, base_name = resolve_model(cfg.model.model)
    check_not_input(output_dir, _files_read(train_data, validation, cfg, source), "--output folder")
    _check_output(output_dir)
    check_model_files(source)  # damaged base weights fail now, not after the data is checked and tokenized
    state = PartialState(cpu=not torch.cuda.is_available())
    progress = sys.stderr.isatty() if progress is None else progress
    work = work_folder(output_dir)
    return Job(cfg, output_dir, work, source, base_name, state, progress, cache_dir, started, extensions)


def _train(
    job: Job, train_data: DataSource, validation: DataSource | None, resume: bool | None, check: bool
) -> TrainResult:
    """train() in the work folder it holds: check, tokenize, build the Trainer, fit (or continue), finalize and
    publish."""
    cfg = job.cfg
    set_seed(cfg.train.seed)
    tokenizer = load_tokenizer(job.source, cfg.model.trust_remote_code)
    max_length = usable_max_length(cfg.data.max_length, tokenizer, load_model_config(job.source, cfg.model))
    checks, train_ds, val_ds, schema = _check_and_tokenize(job, train_data, validation, tokenizer, max_length, check)
    _refuse_for_multi_label(cfg, schema)
    model = _base_model(cfg, schema, train_ds)
    precision = pick_precision(cfg.train.precision, model_type=getattr(model.config, "model_type", None))
    checkpoint = _resume_point(job, _run_identity(job, train_ds, val_ds, precision, max_length), resume)
    recorder = recorder_for(cfg, train_ds, schema, max_length, checkpoint if job.main else None, bool(job.progress))
    trainer = build_trainer(job, model, tokenizer, train_ds, val_ds, schema, precision, recorder)
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    outcome = score(trainer, val_ds, tokenizer, schema, job)
    trainer.save_model(str(job.work / "model"))  # model.safetensors, config.json (id2label), tokenizer files
    resumed = int(checkpoint.name.split("-")[-1]) if checkpoint is not None else None
    dynamics = None
    if job.main:
        meta = model_meta(job, schema, max_length, precision, train_ds, val_ds, output.metrics)
        meta.update(processes=job.state.num_processes, resumed_from_step=resumed)
        if recorder is not None:  # into the staged folder: published with the model
            dynamics = write_dynamics(recorder, train_data, cfg.data, train_ds, job.work / "model", job.progress)
            meta["dynamics"] = {"file": DYNAMICS_FILE, "rows": len(dynamics.aum), "epochs": len(recorder.epochs)}
        stage(job.work, meta, outcome, checks, cfg.train.thresholds, val_ds)
        publish(job.work, job.output_dir)  # the output holds the old model or the new one, whole, whenever killed
        logger.info("model written to %s", job.output_dir)
    job.state.wait_for_everyone()
    seconds = float(output.metrics.get("train_runtime", 0))
    return TrainResult(job.output_dir, outcome.metrics, schema.names, len(train_ds), len(val_ds), seconds, resumed,
                       dynamics)  # fmt: skip


def _check_and_tokenize(
    job: Job,
    train_data: DataSource,
    validation: DataSource | None,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    check: bool,
) -> tuple[dict[str, Any] | None, TokenizedRows, TokenizedRows, LabelSchema]:
    """The data checks (None when skipped), then the tokenized rows. One process checks and tokenizes; the others
    then read its caches."""
    shown = job.progress and job.main
    with job.state.main_process_first():
        checks = checked(train_data, validation, job.cfg, job.cache_dir, shown) if check else None
        data = load_train_and_validation(train_data, validation, job.cfg, tokenizer, max_length, job.cache_dir, shown)
    return checks, *data


def _refuse_for_multi_label(cfg: RunConfig, schema: LabelSchema) -> None:
    """Settings that take one label per row, refused for multi-label data as soon as the labels are read (a list
    column makes data multi-label without an option), before the work folder holds anything."""
    single = [name for name, on in (("record_dynamics", cfg.train.record_dynamics),
                                    ("label_smoothing", cfg.train.label_smoothing)) if on]  # fmt: skip
    if schema.multi_label and single:
        raise ConfigError(f"{single[0]} takes one label per row; leave it off for multi-label data")


def _base_model(cfg: RunConfig, schema: LabelSchema, train_ds: TokenizedRows) -> Any:
    """The pretrained encoder with a new head for the schema's labels; the learning rate resolved for the run."""
    model, _, _ = load_pretrained(cfg.model, schema)
    layers.reinit_top(model, cfg.train.reinit_layers)
    if schema.multi_label:
        multilabel.start_at_base_rates(model, train_ds.labels)
    if cfg.train.epochs is None:
        per_epoch = epoch_steps(cfg.train, len(train_ds))
        cfg.train.epochs = default_epochs(per_epoch)
        if cfg.train.epochs > DEFAULT_EPOCHS:
            stop = f"; --max-steps stops it at {cfg.train.max_steps} steps" if cfg.train.max_steps else ""
            logger.info("%g epochs of %d optimizer steps (small data: the default reaches %d steps; the best epoch on "
                        "validation is kept; --epochs sets them%s)", cfg.train.epochs, per_epoch, MIN_STEPS,
                        stop)  # fmt: skip
    if cfg.train.lr is None:
        steps = planned_steps(cfg.train, len(train_ds))
        cfg.train.lr = default_lr(steps)
        logger.info("learning rate %g (the default for a run of %d optimizer steps)", cfg.train.lr, steps)
    return model


def _resume_point(job: Job, run: dict[str, Any], resume: bool | None) -> Path | None:
    """The checkpoint to continue from (the log trimmed to it), or None for a fresh start in an emptied work folder."""
    with job.state.main_process_first():
        if job.main:
            checkpoint = prepare_work(job.work, run, job.cfg.train.patience, resume, job.output_dir)
        else:
            checkpoint = _peek_resume(job.work)
    if checkpoint is not None and job.main:  # the first process alone writes the log
        trim_log(job.work / LOG_FILE, int(checkpoint.name.split("-")[-1]))
    return checkpoint


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


def _peek_resume(work: Path) -> Path | None:
    """What the main process chose (other DDP processes ask after it has prepared the work folder)."""
    done = complete_checkpoints(work / "checkpoints")
    return done[-1] if done else None


def _run_identity(
    job: Job, train_ds: TokenizedRows, val_ds: TokenizedRows, precision: str, max_length: int
) -> dict[str, Any]:
    """What must match for a checkpoint to be continued: the settings that change the result, as resolved for this
    run, the data (token caches are keyed by the files' identity and the tokenization), base model, process count,
    and a caller's trainer_args (only when given, so that runs without them keep their identity)."""
    cfg = job.cfg
    weights = cfg.train.class_weights
    if weights not in ("none", "auto"):  # a file: what it says, not where it is
        weights = "sha256:" + hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    extra = {"trainer_args": job.extensions.identity()} if job.extensions.trainer_args else {}
    return run_identity(
        cfg,
        base_model=job.base_name,
        precision=precision,
        max_length=max_length,
        class_weights=weights,
        train_data=train_ds.data.folder.name,
        val_data=val_ds.data.folder.name,
        rows=[len(train_ds), len(val_ds)],
        processes=job.state.num_processes,
        **extra,
    )


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
