"""Fast (Rust) tokenizers: loading, the usable max length, and encoding many texts in large batches."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from .errors import ModelError

logger = logging.getLogger(__name__)

ENCODE_CHUNK = 8192  # texts per call into the Rust tokenizer: large enough to amortise, small enough for memory


def load_tokenizer(path: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelError(f"{path}: cannot load a tokenizer ({str(err).splitlines()[0]})") from None
    if not tokenizer.is_fast:
        logger.warning("%s: no fast tokenizer available; tokenizing will be slow", path)
    return tokenizer


def usable_max_length(requested: int, tokenizer: PreTrainedTokenizerBase, model_config: Any) -> int:
    """The requested max length, clamped to what the model's position embeddings and tokenizer allow."""
    limits = [requested]
    positions = getattr(model_config, "max_position_embeddings", None)
    if positions:
        # RoBERTa-style models reserve padding_idx + 1 positions before the first token.
        offset = (getattr(model_config, "pad_token_id", 0) or 0) + 1 if model_config.model_type in _OFFSET_MODELS else 0
        limits.append(positions - offset)
    if tokenizer.model_max_length and tokenizer.model_max_length < 1_000_000:
        limits.append(tokenizer.model_max_length)
    length = min(limits)
    if length < requested:
        logger.warning("max_length %d is more than the model takes; using %d", requested, length)
    return length


_OFFSET_MODELS = {"roberta", "xlm-roberta", "camembert", "longformer", "mpnet"}


@dataclass
class Encoded:
    """Unpadded token ids of a window of texts, with their lengths and how many were cut at max_length."""

    ids: list[list[int]]
    lengths: np.ndarray  # (n_texts,) int64
    truncated: int


class WindowEncoder:
    """Encodes many texts at once with the Rust tokenizer directly (1.3-1.9x faster than the Python call here)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.backend = None
        if tokenizer.is_fast:
            # A private copy: truncation and padding are settings of the Rust object, shared with the tokenizer.
            self.backend = copy.deepcopy(tokenizer.backend_tokenizer)
            self.backend.no_padding()
            self.backend.enable_truncation(max_length)

    def __call__(self, texts: Sequence[str]) -> Encoded:
        if self.backend is None:
            # Slow (Python) tokenizers: rare; a second untruncated pass counts what was cut.
            ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
            full = self.tokenizer(list(texts), truncation=False)["input_ids"]
            truncated = sum(len(x) > self.max_length for x in full)
        else:
            encodings = self.backend.encode_batch_fast(list(texts))
            ids = [e.ids for e in encodings]
            truncated = sum(1 for e in encodings if e.overflowing)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        return Encoded(ids, lengths, truncated)

    def pad(self, ids: list[list[int]], lengths: np.ndarray) -> dict[str, torch.Tensor]:
        """A right-padded batch: input_ids and attention_mask, both (rows, longest)."""
        longest = int(lengths.max())
        input_ids = np.full((len(ids), longest), self.pad_id, dtype=np.int64)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = seq
        mask = np.arange(longest)[None, :] < lengths[:, None]
        return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask.astype(np.int64))}


def token_budget_batches(lengths: np.ndarray, batch_tokens: int, max_rows: int | None = None) -> list[np.ndarray]:
    """Row indices sorted longest first, cut so each padded batch holds at most `batch_tokens` tokens.

    Sorting inside a window makes padding nearly vanish; a token budget (not a row count) keeps batches of
    short texts large and batches of long texts small, so every batch costs about the same.
    """
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)  # the first row of a batch is its longest
        rows = max(1, batch_tokens // longest)
        if max_rows:
            rows = min(rows, max_rows)
        batches.append(order[start : start + rows])
        start += rows
    return batches
