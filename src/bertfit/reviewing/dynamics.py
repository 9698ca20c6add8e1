"""Training dynamics: one training run that scores every training row after each epoch, for users who cannot afford
k runs. Per row: confidence (mean probability of its given label over the epochs), variability (their standard
deviation; dataset cartography) and the area under the margin (mean of the given label's logit less the largest
other logit; AUM). Rows the model never learns to give their label (low confidence, low variability, negative AUM)
are the likely label errors; high variability marks the ambiguous ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import TrainerCallback

from bertfit.tokenization import aggregate_windows

logger = logging.getLogger(__name__)


class DynamicsRecorder(TrainerCallback):
    """Scores `texts` with the model being trained at the end of each epoch (fp32, eval mode, then back to train)."""

    def __init__(self, texts: list, width: int, max_length: int, long: str, stride: int, aggregate: str) -> None:
        self.texts, self.width = texts, width
        self.window = (max_length, long, stride, aggregate)
        self.epochs: list[np.ndarray] = []  # (rows, labels) logits, one array per epoch

    def on_epoch_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        from bertfit.prediction.scorer import Scorer

        max_length, long, stride, aggregate = self.window
        device = next(model.parameters()).device.type
        scorer = Scorer(model, kwargs["processing_class"], device, "fp32", max_length, long, stride, self.width)
        encoded = scorer.encode_present(self.texts)
        logits = scorer.logits(encoded, scorer.default_batch_tokens(), None)
        if encoded.docs is not None:
            logits = aggregate_windows(logits, encoded.docs, len(self.texts), aggregate)
        self.epochs.append(np.asarray(logits, dtype=np.float32))
        model.train()
        logger.info("training dynamics: epoch %d scored on %d rows", len(self.epochs), len(self.texts))


@dataclass
class Dynamics:
    confidence: np.ndarray
    variability: np.ndarray
    correctness: np.ndarray
    aum: np.ndarray
    mean_probs: np.ndarray  # (rows, labels): the softmax averaged over epochs


def figures(epochs: list[np.ndarray], labels: np.ndarray) -> Dynamics:
    """Each row's dynamics figures from its per-epoch logits and its given label ids."""
    logits = np.stack(epochs).astype(np.float64)  # (epochs, rows, labels)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    rows = np.arange(len(labels))
    given = probs[:, rows, labels]  # (epochs, rows)
    other = logits.copy()
    other[:, rows, labels] = -np.inf
    margin = logits[:, rows, labels] - other.max(-1)
    return Dynamics(given.mean(0), given.std(0), (probs.argmax(-1) == labels).mean(0), margin.mean(0), probs.mean(0))
