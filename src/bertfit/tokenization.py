"""Fast (Rust) tokenizers: loading, the usable max length, and encoding many texts in large batches."""

from __future__ import annotations

import logging
from collections.abc import Sequence
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


def encode(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> dict[str, list[list[int]]]:
    """Token ids for every text, unpadded (padding happens per batch), truncated to max_length."""
    out: dict[str, list[list[int]]] = {}
    for start in range(0, len(texts), ENCODE_CHUNK):
        chunk = list(texts[start : start + ENCODE_CHUNK])
        enc = tokenizer(chunk, truncation=True, max_length=max_length, padding=False)
        for key, values in enc.items():
            out.setdefault(key, []).extend(values)
    return out


class EncodedDataset(torch.utils.data.Dataset):
    """Pre-tokenized examples as dicts of lists, the form DataCollatorWithPadding and Trainer expect."""

    def __init__(self, encodings: dict[str, list[list[int]]], labels: np.ndarray | None = None) -> None:
        self.encodings = encodings
        self.labels = labels

    def __len__(self) -> int:
        return len(self.encodings["input_ids"])

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {key: values[i] for key, values in self.encodings.items()}
        if self.labels is not None:
            item["labels"] = int(self.labels[i])
        return item

    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.encodings["input_ids"]]
