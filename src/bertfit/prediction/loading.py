"""A model folder -> the parts a Classifier is made of: a Scorer (an engine, tokenizer, windows) and a Decoder.

`explain` builds the same parts without a Classifier, so the two share one loading path. The engine is the torch
model, or for a folder written by `bertfit export` an ONNX Runtime or OpenVINO model (`engines`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bertfit.config import ModelConfig
from bertfit.errors import ConfigError
from bertfit.labels import LabelSchema
from bertfit.modeling import (
    check_precision,
    has_torch_weights,
    load_model_config,
    load_trained,
    pick_precision,
    plain_meta,
    read_meta,
    require_model_dir,
)
from bertfit.prediction.decoder import Decoder, calibration_temperature, stored_thresholds
from bertfit.prediction.engines import SYNONYMS, engine_forward, resolve_engine
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
    dtype = pick_precision(dtype, device, getattr(model.config, "model_type", None))
    if dtype == "fp16" and device == "cpu":
        raise ConfigError("fp16 is for GPUs; on a CPU use --dtype bf16 or fp32")
    return model.to(device=device, dtype=DTYPES[dtype]), tokenizer, meta, device, dtype


def explainer_scorer(scorer: Scorer, model_dir: str | Path | None, engine: str) -> Scorer:
    """An fp32 torch Scorer for explaining, of its own (the scoring one is left as it runs): a copy of the torch
    model, or for an ONNX or OpenVINO export the fp32 weights `bertfit export` keeps beside it (model.safetensors)."""
    if scorer.model is not None:
        model = copy.deepcopy(scorer.model).float()
    elif model_dir is not None and has_torch_weights(model_dir):
        model = load_weights(model_dir, "cpu", "fp32")[0]
    else:
        raise ConfigError(f"explain needs torch weights (model.safetensors) beside the {engine} model; load the "
                          "trained model folder to explain")  # fmt: skip
    s = scorer
    return Scorer(model, s.tokenizer, model.device.type, "fp32", s.max_length, s.long, s.stride, s.width)


@dataclass
class Loaded:
    """A model folder loaded for one engine: the torch model (None for the other engines), what runs a batch, the
    model's config, tokenizer and bertfit metadata, and where and in which precision it runs. `auto`: the engine
    was not named (--engine auto), so a torch folder may run on OpenVINO when measured faster (`engine_choice`)."""

    model: Any
    forward: Any
    config: Any
    tokenizer: Any
    meta: dict[str, Any]
    device: str
    dtype: str
    engine: str
    auto: bool = False


def load_engine(
    model_dir: str | Path,
    engine: str | None = "auto",
    device: str | None = None,
    dtype: str = "auto",
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> Loaded:
    """A model folder loaded for `engine` (auto: the folder's own, see `engines.resolve_engine`). The onnx and
    openvino engines load no torch weights: only config.json, the tokenizer and bertfit.json beside their file."""
    auto = SYNONYMS.get(engine or "auto", engine or "auto") == "auto"
    engine = resolve_engine(engine, model_dir)
    if engine == "torch":
        model, tokenizer, meta, device, dtype = load_weights(model_dir, device, dtype, allow_pickle, trust_remote_code)
        return Loaded(model, model, model.config, tokenizer, meta, device, dtype, engine, auto)
    folder = require_model_dir(model_dir)
    check_precision(dtype)  # a bad name fails before the runtime is imported
    config = load_model_config(str(folder), ModelConfig(trust_remote_code=trust_remote_code))
    tokenizer = load_tokenizer(str(folder), trust_remote_code=trust_remote_code)
    forward, dtype = engine_forward(folder, engine, device, dtype)
    return Loaded(None, forward, config, tokenizer, read_meta(folder) or plain_meta(config), "cpu", dtype, engine)


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
    loaded: Loaded | None = None,
) -> tuple[Scorer, Decoder]:
    """The Scorer and Decoder of a loaded model: max_length and the window settings are the ones given, else the
    ones it was trained with (bertfit.json), max_length capped to what the model can take. With `loaded` (from
    `load_engine`), its engine runs the batches; else the torch `model`."""
    schema = LabelSchema.from_dict(meta["labels"])
    data = meta.get("data", {})
    trained_length = int(data.get("max_length", 512))
    config = loaded.config if loaded is not None else model.config
    max_length = usable_max_length(max_length or trained_length, tokenizer, config)
    long, stride, aggregate = window_settings(data, max_length, long, stride, aggregate)
    decoder = Decoder(schema, calibration_temperature(meta), stored_thresholds(meta, schema), aggregate)
    scorer = Scorer(model, tokenizer, device, dtype, max_length, long, stride, len(schema))
    scorer.multi_label = schema.multi_label
    if loaded is not None:
        scorer.forward, scorer.engine = loaded.forward, loaded.engine
        scorer.engine_auto = loaded.auto and loaded.engine == "torch" and dtype == "auto"  # --dtype given: obeyed
    return scorer, decoder


def input_columns(meta: dict[str, Any]) -> tuple[list[str], str | None]:
    """The text columns and the pair column (None for single-text models) a model was trained on."""
    data = meta.get("data", {})
    return list(data.get("text_cols", ["text"])), data.get("pair_col")
