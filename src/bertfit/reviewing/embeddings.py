"""Text embeddings from a classifier's own encoder (for spreading picks out), and k-center greedy selection."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bertfit.errors import ConfigError
from bertfit.prediction.scorer import Scorer
from bertfit.tokenization import token_budget_batches


def embed(scorer: Scorer, texts: list[Any], batch_tokens: int, batch_size: int | None = None) -> np.ndarray:
    """Mean-pooled last hidden states of the model's encoder, L2-normalised: shape (len(texts), hidden).

    Texts cut into sliding windows get the mean of their windows' vectors. Runs the scorer's torch model, also when
    --engine auto moved its predictions to OpenVINO (the torch model stays loaded); an exported folder's scorer has
    none (its engines give logits, not hidden states)."""
    if scorer.model is None:
        raise ConfigError(f"embeddings need the torch engine, not {scorer.engine}; load the model with engine='torch'")
    encoded = scorer.encoder(texts)
    base = scorer.model.base_model
    vectors: np.ndarray | None = None
    with torch.inference_mode():
        for idx in token_budget_batches(encoded.lengths, batch_tokens, batch_size):
            starts = None if encoded.type_starts is None else encoded.type_starts[idx]
            batch = scorer.encoder.pad([encoded.ids[i] for i in idx], encoded.lengths[idx], starts)
            batch = {k: v.to(scorer.device) for k, v in batch.items()}
            hidden = base(**batch).last_hidden_state.float()  # (rows, tokens, hidden)
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            if vectors is None:
                vectors = np.empty((len(encoded.lengths), pooled.shape[1]), dtype=np.float32)
            vectors[idx] = pooled.cpu().numpy()
    if vectors is None:
        return np.empty((0, 0), dtype=np.float32)
    if encoded.docs is not None:  # sliding windows: one row per text, the mean of its windows
        sums = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        np.add.at(sums, encoded.docs, vectors)
        vectors = sums / np.bincount(encoded.docs, minlength=len(texts))[:, None]
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def k_center_greedy(vectors: np.ndarray, n: int, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` rows spread out over the space of unit `vectors`: start at `first`, then repeatedly take the row
    farthest (cosine distance) from every row taken so far (Sener & Savarese 2018's k-center greedy).

    Returns the rows in the order taken and each one's distance to the nearest row taken before it (NaN for
    the first: an empty cell in the output)."""
    n = min(n, len(vectors))
    picked = np.empty(n, dtype=np.int64)
    gaps = np.empty(n, dtype=np.float64)
    nearest = np.full(len(vectors), np.inf)
    row = first
    for i in range(n):
        picked[i], gaps[i] = row, nearest[row]
        nearest = np.minimum(nearest, 1.0 - vectors @ vectors[row])
        nearest[picked[: i + 1]] = -np.inf  # never taken twice
        row = int(nearest.argmax())
    gaps[:1] = np.nan
    return picked, gaps
