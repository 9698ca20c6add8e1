"""Training losses: class weights (none, inverse frequency, or a file) and the weighted cross-entropy Trainer calls."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from .errors import ConfigError
from .labels import LabelSchema

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


def weighted_loss(weights: torch.Tensor, schema: LabelSchema) -> Any:
    """Trainer's compute_loss_func for these weights: BCE with pos_weight for multi-label, else weighted CE."""
    return weighted_bce(weights) if schema.multi_label else weighted_cross_entropy(weights)


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


def weighted_cross_entropy(weights: torch.Tensor) -> Any:
    """Trainer's compute_loss_func: class-weighted cross-entropy, summed and divided by the rows in the optimizer
    step (Trainer passes that count across gradient accumulation and processes)."""

    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        total = torch.nn.functional.cross_entropy(
            logits.float(), labels, weight=weights.to(logits.device), reduction="sum"
        )
        return total / (num_items_in_batch if num_items_in_batch is not None else labels.numel())

    return loss


def weighted_bce(pos_weight: torch.Tensor) -> Any:
    """Trainer's compute_loss_func for multi-label: BCE with logits and a per-label pos_weight, averaged over rows
    and labels."""

    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        return torch.nn.functional.binary_cross_entropy_with_logits(
            logits.float(), labels.float(), pos_weight=pos_weight.to(logits.device)
        )

    return loss
