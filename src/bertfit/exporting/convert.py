"""The runtimes' own converters: a torch classifier -> model.onnx (`torch.onnx.export`) or openvino_model.xml
(`openvino.convert_model`), and their int8 forms (ONNX Runtime dynamic quantization, NNCF post-training
quantization). Each int8 method is a ladder of settings, plain first, then keeping the classifier head (the last
two matrix products before the logits: pooler and classifier) in full precision, then (OpenVINO) also the
feed-forward output projections (the matrix products fed by the GELU, whose inputs carry BERT's activation
outliers) of the first half of the layers, then of all layers; the export tries them in order until one passes the
accuracy gate. Ops left out of int8 run at the engine's float precision (OpenVINO: bf16 on CPUs that have it).

Both exported models take int64 input_ids and attention_mask (and token_type_ids where the tokenizer gives them),
of shape (batch, sequence), both dynamic, and give `logits` (batch, labels): what a tokenizer's output feeds as it
is, in plain onnxruntime or openvino, without bertfit.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertfit.data.formats import first_line
from bertfit.errors import MissingDependency, ModelError
from bertfit.prediction.engines import LogitsOnly, import_onnxruntime

logger = logging.getLogger(__name__)

OPSET = 18
EXTERNAL_DATA_BYTES = 1_800_000_000  # a protobuf file holds at most 2 GB: larger models keep weights beside it
ONNX_RUNGS = ("dynamic", "dynamic per-channel", "dynamic per-channel, head kept fp32")
OPENVINO_RUNGS = (
    "nncf transformer",
    "nncf transformer, head kept fp32",
    "nncf transformer, head and first half's feed-forward outputs kept float",
    "nncf transformer, head and feed-forward outputs kept float",
    "nncf transformer mixed, head kept fp32",
)
ACTIVATIONS = {"Gelu", "Relu", "Swish", "HSwish", "Mish"}  # what feeds a feed-forward output projection


def to_onnx(model: torch.nn.Module, example: dict[str, torch.Tensor], path: Path) -> None:
    """model.onnx from the fp32 torch model, with `example` (a padded batch) tracing the inputs it takes.

    torch 2.13 has two exporters. The TorchScript one (dynamo=False, deprecated since 2.9 but kept) exports the
    tiny test BERT in 0.1 s and MiniLM in about a second; the torch.export one (dynamo=True, needs onnxscript) gives
    the same logits (to 1e-8) but takes ~5 s for the tiny BERT. The first is used, the second where it fails."""
    names = list(example)
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    wrapped = LogitsOnly(model).eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapped, tuple(example.values()), str(path), input_names=names, output_names=["logits"], dynamo=False,
                dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "logits": {0: "batch"}},
                opset_version=OPSET,
            )  # fmt: skip
        return
    except Exception as err:  # the TorchScript exporter gone, or a model it cannot trace
        logger.info("the TorchScript ONNX exporter failed (%s); using torch.export", first_line(err))
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    try:
        torch.onnx.export(
            wrapped, (), str(path), kwargs=example, input_names=names, output_names=["logits"], dynamo=True,
            dynamic_shapes={name: {0: batch, 1: sequence} for name in names}, opset_version=OPSET,
            external_data=size > EXTERNAL_DATA_BYTES, optimize=True, verbose=False,
        )  # fmt: skip
    except ImportError as err:  # the exporter imports onnx and onnxscript on use
        raise MissingDependency(err.name or "onnxscript", "onnx", "Exporting to ONNX") from None


def quantize_onnx(fp32: Path, out: Path, rung: str) -> None:
    """int8 weights with activations quantized on the fly (ONNX Runtime dynamic quantization), per tensor or per
    output channel, and optionally with the classifier head left in fp32."""
    import_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    head = head_nodes_onnx(fp32) if "head" in rung else []
    exclude = head + [f"{name}_MatMul" for name in head]  # ORT 1.32 turns a Gemm into NAME_MatMul + Add first
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic warns on the root logger to run ORT's pre-processing first
    try:
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel="per-channel" in rung,
                         op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=exclude)  # fmt: skip
    finally:
        root.setLevel(level)


def head_nodes_onnx(path: Path, count: int = 2) -> list[str]:
    """The names of the last `count` MatMul/Gemm nodes on the way back from the logits (classifier, pooler)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    found, seen, stack = [], set(), [o.name for o in graph.output]
    while stack and len(found) < count:
        node = producer.get(stack.pop(0))
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in ("MatMul", "Gemm"):
            found.append(node.name)
        stack.extend(node.input)
    return found


def quantize_openvino(ov_model: Any, calibration: Iterable[dict[str, np.ndarray]], rung: str) -> Any:
    """int8 weights and activations (NNCF post-training quantization), activation ranges from the calibration
    batches; the transformer preset (SmoothQuant, attention kept in the shape OpenVINO runs fastest), optionally the
    classifier head ignored, with it the feed-forward output projections of the first half of the layers or of all
    (left in float, where int8 flips the most labels: measured on MiniLM emotion and SST-2 models), and the "mixed"
    preset (asymmetric activations) on the last rung."""
    nncf = _import_nncf()
    samples = list(calibration)
    if not samples:
        raise ModelError("no calibration texts: pass --calibration FILE with texts of the kind the model will label")
    options: dict[str, Any] = {"model_type": nncf.ModelType.TRANSFORMER, "subset_size": len(samples)}
    if "head" in rung:
        kept = head_nodes_openvino(ov_model)
        if "feed-forward" in rung:
            ffn = feed_forward_outputs_openvino(ov_model)
            kept += ffn[: len(ffn) // 2] if "first half" in rung else ffn
        options["ignored_scope"] = nncf.IgnoredScope(names=kept, validate=False)
    if "mixed" in rung:
        options["preset"] = nncf.QuantizationPreset.MIXED
    return nncf.quantize(ov_model.clone(), nncf.Dataset(samples), **options)


def head_nodes_openvino(ov_model: Any, count: int = 2) -> list[str]:
    """The friendly names of the last `count` MatMul nodes on the way back from the logits."""
    found, seen, stack = [], set(), [r.input_value(0).get_node() for r in ov_model.get_results()]
    while stack and len(found) < count:
        node = stack.pop(0)
        if node.get_friendly_name() in seen:
            continue
        seen.add(node.get_friendly_name())
        if node.get_type_name() == "MatMul":
            found.append(node.get_friendly_name())
        stack.extend(value.get_node() for value in node.input_values())
    return found


def feed_forward_outputs_openvino(ov_model: Any) -> list[str]:
    """The friendly names of the MatMul nodes fed by an activation (GELU): each layer's feed-forward output
    projection, first layer first."""
    return [op.get_friendly_name() for op in ov_model.get_ordered_ops() if op.get_type_name() == "MatMul"
            and op.input_value(0).get_node().get_type_name() in ACTIVATIONS]  # fmt: skip


def _import_nncf() -> Any:
    try:
        import nncf
    except ImportError:
        raise MissingDependency("nncf", "openvino", "int8 export for OpenVINO") from None
    nncf.set_log_level(logging.WARNING)  # its INFO lines go to the stdout it saw at import, past --json
    return nncf
