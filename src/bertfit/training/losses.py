"""Training losses: class weights (none, inverse frequency, or a file) and the loss Trainer calls, exact under
gradient accumulation and DDP."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from bertfit.errors import ConfigError
from bertfit.labels import LabelSchema

logger = logging.getLogger(__name__)


def class_weights(spec: str, labels: np.ndarray, schema: LabelSchema) -> torch.Tensor | None:
    """Per-class loss weights: none, auto or a file. Auto: inverse class frequency averaging 1 over the training
    rows; for multi-label (`labels` multi-hot), BCE's pos_weight, each label's negatives / positives."""
    if spec == "none":
        return None
    if spec == "auto" and schema.multi_label:
        positives = labels.sum(0).astype(np.float64)
        weights = np.where(positives > 0, (len(labels) - positives) / np.maximum(positives, 1), 1.0)
    elif spec == "auto":
        counts = np.bincount(labels, minlength=len(schema)).astype(np.float64)
        weights = np.where(counts > 0, len(labels) / (len(schema) * np.maximum(counts, 1)), 0.0)
    else:
        weights = _weights_file(Path(spec), schema)
    what = "positive-class weights" if schema.multi_label else "class weights"
    logger.info("%s: %s", what, ", ".join(f"{n} {w:.3g}" for n, w in zip(schema.names, weights)))
    return torch.tensor(weights, dtype=torch.float32)


def training_loss(schema: LabelSchema, weights: torch.Tensor | None = None, smoothing: float = 0.0) -> Any:
    """Trainer's compute_loss_func for every run, weighted or not: BCE (weights as pos_weight) for multi-label, else
    cross-entropy (weights per class, labels smoothed by `smoothing`; multi-label data with smoothing is refused
    before training, in run.py).

    The contract with Trainer: the loss is a sum over this batch divided by `num_items_in_batch`, the label count of
    the whole optimizer step, which Trainer gathers over gradient accumulation and processes (with
    `average_tokens_across_devices`, on by default). Trainer then neither divides it by the accumulation steps nor
    lets DDP's gradient mean shrink it (it multiplies by the process count), so one step over 16 rows is the same
    step as 2 accumulated batches of 8 or 2 processes with 8 each, and the logged loss is the mean over the step's
    rows. A model's own loss is a per-batch mean, which Trainer cannot tell from this kind when its forward takes
    **kwargs (BERT's does): it then skipped the division and over-counted 2x at 8 x 2 and at 2 processes x 8.
    """
    return binary_cross_entropy(weights) if schema.multi_label else cross_entropy(weights, smoothing)


def _weights_file(path: Path, schema: LabelSchema) -> np.ndarray:
    if not path.is_file():
        raise ConfigError(f"{path}: class weights file not found; pass auto, none, or a JSON/YAML label: weight file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML also reads JSON
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid JSON or YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f'{path}: expected a mapping of label: weight, e.g. {{"{schema.names[0]}": 2.0}}')
    raw = {str(k): v for k, v in raw.items()}
    missing = [n for n in schema.names if n not in raw]
    unknown = [k for k in raw if k not in schema.label2id]
    if missing or unknown:
        what = f"no weight for '{missing[0]}'" if missing else f"unknown label '{unknown[0]}'"
        raise ConfigError(f"{path}: {what}; give one weight per label: {', '.join(schema.names)}")
    try:
        weights = np.array([float(raw[n]) for n in schema.names])
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: every weight must be a number") from None
    if (weights < 0).any() or not weights.any():
        raise ConfigError(f"{path}: weights must be 0 or more, and not all 0")
    return weights


def cross_entropy(weights: torch.Tensor | None = None, smoothing: float = 0.0) -> Any:
    """Trainer's compute_loss_func for one label per text: cross-entropy (against labels smoothed by `smoothing`:
    1 - smoothing on the given class plus smoothing spread over all classes), each row's term times its class's
    weight (when given), summed and divided by the rows of the whole optimizer step. The rows, not the sum of their
    weights: that count adds up over accumulated batches and processes, so the step is exact however it is split."""

    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = _logits(outputs)
        weight = None if weights is None else weights.to(logits.device)
        total = torch.nn.functional.cross_entropy(
            logits, labels, weight=weight, reduction="sum", label_smoothing=smoothing
        )
        return total / _step_items(num_items_in_batch, labels)

    return loss


def binary_cross_entropy(pos_weight: torch.Tensor | None = None) -> Any:
    """Trainer's compute_loss_func for multi-label: BCE with logits (with a per-label pos_weight when given), summed
    and divided by the (row, label) cells of the whole optimizer step: the mean over rows and labels."""

    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = _logits(outputs)
        weight = None if pos_weight is None else pos_weight.to(logits.device)
        total = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, labels.float(), pos_weight=weight, reduction="sum"
        )
        return total / _step_items(num_items_in_batch, labels)

    return loss


def _logits(outputs: Any) -> torch.Tensor:
    return (outputs["logits"] if isinstance(outputs, dict) else outputs[0]).float()


def _step_items(num_items_in_batch: Any, labels: torch.Tensor) -> Any:
    """What the summed loss is divided by: Trainer's count of label cells over every batch and process of the
    optimizer step (`labels.ne(-100).sum()`: rows, or rows x labels for multi-hot rows); this batch's own count
    when Trainer gives none (a loss computed outside training)."""
    return num_items_in_batch if num_items_in_batch is not None else labels.numel()
