"""A model folder -> the parts a Classifier is made of: a Scorer (weights, tokenizer, windows) and a Decoder.

`explain` builds the same parts without a Classifier, so the two share one loading path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bertfit.config import ModelConfig
from bertfit.errors import ConfigError
from bertfit.labels import LabelSchema
from bertfit.modeling import load_trained, pick_precision
from bertfit.prediction.decoder import Decoder, calibration_temperature, stored_thresholds
from bertfit.prediction.scorer import DTYPES, Scorer, window_settings
from bertfit.tokenization import load_tokenizer, usable_max_length


def load_weights(
    model_dir: str | Path,
    device: str | None = None,
    dtype: str = "auto",
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> tuple[Any, Any, dict[str, Any], str, str]:
    """(model on `device` cast to the dtype, tokenizer, bertfit metadata, device, dtype) of a model folder.

    "auto" on a CPU stays "auto", with fp32 weights: the Scorer measures which dtype to use on the first rows it
    scores (`dtype_choice`); on a GPU it is bf16 where supported, else fp16. fp16 is refused on a CPU.
    """
    model_cfg = ModelConfig(allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    model, meta = load_trained(model_dir, model_cfg)
    tokenizer = load_tokenizer(str(model_dir), trust_remote_code=trust_remote_code)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto" and device == "cpu":
        return model.to(device=device, dtype=torch.float32), tokenizer, meta, device, dtype
    dtype = pick_precision(dtype, device)
    if dtype == "fp16" and device == "cpu":
        raise ConfigError("fp16 is for GPUs; on a CPU use --dtype bf16 or fp32")
    return model.to(device=device, dtype=DTYPES[dtype]), tokenizer, meta, device, dtype


def build_parts(
    model: Any,
    tokenizer: Any,
    meta: dict[str, Any],
    device: str,
    dtype: str,
    max_length: int | None = None,
    long: str | None = None,
    stride: int | None = None,
    aggregate: str | None = None,
) -> tuple[Scorer, Decoder]:
    """The Scorer and Decoder of a loaded model: max_length and the window settings are the ones given, else the
    ones it was trained with (bertfit.json), max_length capped to what the model can take."""
    schema = LabelSchema.from_dict(meta["labels"])
    data = meta.get("data", {})
    trained_length = int(data.get("max_length", 512))
    max_length = usable_max_length(max_length or trained_length, tokenizer, model.config)
    long, stride, aggregate = window_settings(data, max_length, long, stride, aggregate)
    decoder = Decoder(schema, calibration_temperature(meta), stored_thresholds(meta, schema), aggregate)
    return Scorer(model, tokenizer, device, dtype, max_length, long, stride, len(schema)), decoder


def input_columns(meta: dict[str, Any]) -> tuple[list[str], str | None]:
    """The text columns and the pair column (None for single-text models) a model was trained on."""
    data = meta.get("data", {})
    return list(data.get("text_cols", ["text"])), data.get("pair_col")
