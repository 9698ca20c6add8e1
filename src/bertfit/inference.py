"""Classifier: load a trained model folder and label texts fast (length-sorted batches, bf16 where it pays)."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .checks import clean_text, join_text
from .config import ModelConfig
from .errors import ConfigError, DataError
from .io import check_writable, read_table, table_format, write_table
from .labels import LabelSchema
from .modeling import load_trained, pick_precision
from .tokenization import encode, load_tokenizer

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64
OUTPUT_COLUMNS = ("pred_label", "pred_score")


class Classifier:
    """A fine-tuned text classifier.

    Example:
        >>> clf = Classifier.from_pretrained("models/emotion")
        >>> clf.predict(["i feel great"])
        [{'label': 'joy', 'score': 0.98}]
    """

    def __init__(self, model: Any, tokenizer: Any, meta: dict[str, Any], device: str, precision: str) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.meta = meta
        self.schema = LabelSchema.from_dict(meta["labels"])
        self.text_cols: list[str] = list(meta.get("data", {}).get("text_cols", ["text"]))
        self.max_length = int(meta.get("data", {}).get("max_length", 512))
        self.device = device
        self.precision = precision

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        device: str | None = None,
        precision: str = "auto",
        allow_pickle: bool = False,
        trust_remote_code: bool = False,
    ) -> Classifier:
        """Load a folder written by `bertfit train` (or any Hugging Face sequence-classification folder)."""
        model, meta = load_trained(
            model_dir, ModelConfig(allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        )
        tokenizer = load_tokenizer(str(model_dir), trust_remote_code=trust_remote_code)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        precision = pick_precision(precision, device)
        if device.startswith("cuda") and precision in ("bf16", "fp16"):
            model = model.to(dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
        return cls(model.to(device), tokenizer, meta, device, precision)

    @property
    def labels(self) -> list[str]:
        return list(self.schema.names)

    def predict(
        self, texts: Sequence[str] | pd.Series, batch_size: int | None = None, progress: bool = False
    ) -> list[dict[str, Any]]:
        """The most likely label and its probability for each text; empty texts get label None and score NaN."""
        proba = self.predict_proba(texts, batch_size=batch_size, progress=progress)
        return [
            {"label": None, "score": float("nan")}
            if np.isnan(row[0])
            else {"label": self.schema.names[int(row.argmax())], "score": float(row.max())}
            for row in proba
        ]

    def predict_proba(
        self, texts: Sequence[str] | pd.Series, batch_size: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """Class probabilities, shape (n_texts, n_labels), columns in `self.labels` order; NaN rows for empty texts."""
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1 (got {batch_size}); try {DEFAULT_BATCH_SIZE}")
        cleaned = [clean_text(t) for t in _as_list(texts)]
        present = [i for i, t in enumerate(cleaned) if t is not None]
        proba = np.full((len(cleaned), len(self.schema)), np.nan, dtype=np.float32)
        if present:
            proba[present] = self._score(
                [cleaned[i] for i in present], DEFAULT_BATCH_SIZE if batch_size is None else batch_size, progress
            )
        return proba

    def _score(self, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        enc = encode(self.tokenizer, texts, self.max_length)
        lengths = np.fromiter((len(ids) for ids in enc["input_ids"]), dtype=np.int64, count=len(texts))
        order = np.argsort(-lengths, kind="stable")  # longest first: padding waste shrinks, memory peaks early
        out = np.empty((len(texts), len(self.schema)), dtype=np.float32)
        batches = range(0, len(texts), batch_size)
        bar = tqdm(batches, desc="predict", unit="batch", disable=not progress, file=sys.stderr)
        with torch.inference_mode(), self._autocast():
            for start in bar:
                idx = order[start : start + batch_size]
                batch = self.tokenizer.pad({k: [v[i] for i in idx] for k, v in enc.items()}, return_tensors="pt").to(
                    self.device
                )
                logits = self.model(**batch).logits.float()
                out[idx] = torch.softmax(logits, dim=-1).cpu().numpy()
        return out

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device == "cpu" and self.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def predict_file(
    model_dir: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    text_cols: list[str] | None = None,
    batch_size: int | None = None,
    probs: bool = False,
    precision: str = "auto",
    progress: bool = False,
) -> dict[str, Any]:
    """Label every row of a table; the output keeps all input columns and rows, in order, plus predictions."""
    table_format(output_path)
    check_writable(output_path)
    clf = Classifier.from_pretrained(model_dir, precision=precision)
    df = read_table(input_path)
    prob_cols = [f"prob_{name}" for name in clf.labels] if probs else []
    clash = [c for c in (*OUTPUT_COLUMNS, *prob_cols) if c in df.columns]
    if clash:
        raise DataError(f"{input_path}: already has a column '{clash[0]}'; rename or drop it before predicting")
    texts = join_text(df, text_cols or clf.text_cols, str(input_path))
    empty = int(texts.isna().sum())
    if empty:
        logger.warning("%s: %d of %d rows have empty text; their prediction is left empty", input_path, empty, len(df))
    proba = clf.predict_proba(texts, batch_size=batch_size, progress=progress)
    out = df.copy()
    scored = ~np.isnan(proba[:, 0])
    names = np.asarray(clf.labels, dtype=object)
    out["pred_label"] = np.where(scored, names[np.nan_to_num(proba).argmax(-1)], None)
    out["pred_score"] = proba.max(axis=1, initial=-np.inf, where=~np.isnan(proba)).astype(float)
    out.loc[~scored, "pred_score"] = np.nan
    for col, values in zip(prob_cols, proba.T):
        out[col] = values.astype(float)
    write_table(out, output_path)
    return {"rows": len(out), "empty_text": empty, "output": str(output_path), "labels": clf.labels}


def _as_list(texts: Sequence[str] | pd.Series | str) -> list[Any]:
    if isinstance(texts, str):
        raise DataError("predict() takes a list of texts; wrap a single text in a list: predict([text])")
    if isinstance(texts, pd.Series):
        return texts.tolist()
    return list(texts)
