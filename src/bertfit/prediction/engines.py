"""Engines: what runs a padded batch of token ids to logits inside the Scorer. torch (the model itself), ONNX Runtime
(an InferenceSession on model.onnx) or OpenVINO (a compiled openvino_model.xml), all behind one call.

An engine is a callable `forward(input_ids=..., attention_mask=..., token_type_ids=...)` taking the int64 torch
tensors `WindowEncoder.pad` makes and returning an object whose `.logits` is a (rows, labels) tensor: the torch
model's own call has exactly that shape, so the Scorer, the streaming pipeline (windows, length-sorted token-budget
batches, parts, resume) and the Decoder (calibration, thresholds, window aggregation) are the same for every engine.
The ONNX and OpenVINO files are written by `bertfit export`; onnxruntime and openvino are imported only here, on use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertfit.data.formats import first_line
from bertfit.errors import ConfigError, MissingDependency, ModelError
from bertfit.modeling import ENGINE_FILES, engine_files, has_torch_weights, read_meta, require_model_dir

logger = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnx", "openvino")
SYNONYMS = {"local": "auto"}  # `bertfit predict --engine local` named the in-process engine before there were three
OV_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}  # --dtype -> OpenVINO's INFERENCE_PRECISION_HINT
OV_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


@dataclass
class Logits:
    """What an engine's forward returns: the shape of a transformers output, as far as the Scorer reads it."""

    logits: torch.Tensor


def folder_engine(model_dir: str | Path) -> str:
    """The engine a folder is made for: the one `bertfit export` recorded in bertfit.json (else the one whose file
    it holds), torch for a model folder written by `bertfit train` or a plain Hugging Face folder."""
    recorded = (read_meta(model_dir).get("export") or {}).get("format")
    if recorded in ENGINE_FILES:
        return recorded
    found = engine_files(model_dir)
    return next(iter(found)) if found and not has_torch_weights(model_dir) else "torch"


def resolve_engine(requested: str | None, model_dir: str | Path) -> str:
    """torch, onnx or openvino: the one asked for, checked against what the folder holds; auto: the folder's own."""
    name = SYNONYMS.get(requested or "auto", requested or "auto")
    if name not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)} (got '{requested}')")
    require_model_dir(model_dir)  # missing or damaged: that is the error, not which engine it lacks
    if name == "auto":
        return folder_engine(model_dir)
    if name == "torch" and not has_torch_weights(model_dir):
        raise ModelError(
            f"{model_dir}: holds no torch weights (model.safetensors), only an exported engine; use --engine auto, "
            "or the model folder it was exported from"
        )
    if name != "torch" and name not in engine_files(model_dir):
        raise ModelError(
            f"{model_dir}: no {ENGINE_FILES[name]} for the {name} engine; write one with "
            f"'bertfit export {model_dir} --format {name} --output DIR' and predict with DIR"
        )
    return name


def engine_forward(model_dir: str | Path, engine: str, device: str | None, dtype: str) -> tuple[Any, str]:
    """(forward, the precision it runs in) of the onnx or openvino engine of an exported folder, on this CPU with
    torch's thread count. Their device is the CPU; --dtype picks OpenVINO's inference precision."""
    if device not in (None, "cpu"):
        raise ConfigError(f"the {engine} engine runs on the CPU here (got device '{device}'); use --engine torch")
    if dtype == "fp16":
        raise ConfigError("fp16 is for GPUs; on a CPU use --dtype bf16 or fp32")
    int8 = bool((read_meta(model_dir).get("export") or {}).get("int8"))
    path = Path(model_dir) / ENGINE_FILES[engine]
    if engine == "onnx":
        if dtype == "bf16":
            raise ConfigError("the onnx engine runs fp32 (or int8 when exported with --int8); for bf16 use "
                              "--engine openvino or torch")  # fmt: skip
        forward, precision = OnnxForward(path, torch.get_num_threads()), "fp32"
    else:
        forward = OpenVinoForward(path, torch.get_num_threads(), OV_PRECISIONS.get(dtype))
        precision = forward.precision
    return forward, "int8" if int8 else precision


class OnnxForward:
    """A padded batch through an onnxruntime InferenceSession (CPU, intra-op threads as torch's)."""

    def __init__(self, path: Path, threads: int) -> None:
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: the session otherwise warns about unused initializers
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own Fail / InvalidGraph, not OSError
            raise ModelError(f"{path}: onnxruntime cannot load it ({first_line(err)}); export it again") from None
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, **batch: torch.Tensor) -> Logits:
        feeds = model_feeds(self.inputs, batch)
        return Logits(torch.from_numpy(self.session.run(None, feeds)[0]))


class OpenVinoForward:
    """A padded batch through an OpenVINO model compiled for the CPU; `hint` (f32, bf16) sets the inference
    precision, None lets OpenVINO pick (bf16 on CPUs with AVX512-BF16 or AMX, f32 elsewhere). `path` is an
    openvino_model.xml, or an openvino.Model converted in this process (`engine_choice`)."""

    def __init__(self, path: Path | Any, threads: int, hint: str | None) -> None:
        ov = import_openvino()
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if hint:
            config["INFERENCE_PRECISION_HINT"] = hint
        try:
            self.compiled = ov.Core().compile_model(str(path) if isinstance(path, Path) else path, "CPU", config)
        except Exception as err:  # OpenVINO raises RuntimeError for any file it cannot read or compile
            raise ModelError(f"{path}: OpenVINO cannot load it ({first_line(err)}); export it again") from None
        self.request = self.compiled.create_infer_request()
        self.inputs = [i.get_any_name() for i in self.compiled.inputs]
        type_name = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.precision = OV_NAMES.get(type_name, type_name)

    def __call__(self, **batch: torch.Tensor) -> Logits:
        self.request.infer(model_feeds(self.inputs, batch))
        # the output buffer belongs to the request and is overwritten by its next call: copy it out
        return Logits(torch.from_numpy(np.array(self.request.get_output_tensor(0).data, dtype=np.float32)))


def model_feeds(inputs: list[str], batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The batch as the int64 arrays an exported model takes: token_type_ids zeros when the batch has none (single
    texts) but the model takes them, left out when the model does not."""
    feeds = {name: batch[name].numpy() for name in inputs if name in batch}
    if "token_type_ids" in inputs and "token_type_ids" not in feeds:
        feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
    return feeds


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependency("onnxruntime", "onnx", "The onnx engine") from None
    return onnxruntime


def import_openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise MissingDependency("openvino", "openvino", "The openvino engine") from None
    return openvino


# -- the OpenVINO converter, shared by `bertfit export` (exporting/convert.py) and engine auto (engine_choice) ----


class LogitsOnly(torch.nn.Module):
    """The classifier with one tensor out (its logits), which is what both converters trace best."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits


def to_openvino(model: torch.nn.Module, example: dict[str, torch.Tensor]) -> Any:
    """An openvino.Model of the fp32 torch model (openvino.convert_model traces it with `example`)."""
    ov = import_openvino()
    with torch.no_grad():
        ov_model = ov.convert_model(LogitsOnly(model).eval(), example_input=example)
    for port, name in zip(ov_model.inputs, example):
        port.get_tensor().set_names({name})
    ov_model.outputs[0].get_tensor().set_names({"logits"})
    return ov_model


def save_openvino(ov_model: Any, path: Path) -> None:
    """openvino_model.xml and .bin, weights kept as they are (save_model would halve fp32 weights to fp16)."""
    import_openvino().save_model(ov_model, str(path), compress_to_fp16=False)
