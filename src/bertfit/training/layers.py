"""Where each parameter sits in an encoder's stack of layers: layer-wise learning-rate decay and re-initialising the
top layers, for every architecture bertfit trains (BERT, RoBERTa/XLM-R, DeBERTa, ELECTRA, DistilBERT, ModernBERT).

A parameter's depth is 0 for the embeddings, 1..L for the L transformer layers (read from the `.layer.N.` or
`.layers.N.` in its name, the naming of every architecture above) and L + 1 for all that sits above them: pooler,
classification head, a final norm, shared relative-position tables.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch

from bertfit.errors import ConfigError

logger = logging.getLogger(__name__)

_LAYER = re.compile(r"\.(?:layer|layers)\.(\d+)\.")
_LAYER_MODULE = re.compile(r"\.(?:layer|layers)\.(\d+)$")


def depths(model: torch.nn.Module) -> tuple[dict[str, int], int]:
    """Each parameter's depth (name -> 0..L+1) and L, the number of transformer layers."""
    found = {name: _LAYER.search(name) for name, _ in model.named_parameters()}
    n_layers = 1 + max((int(m.group(1)) for m in found.values() if m), default=-1)
    out = {}
    for name, match in found.items():
        if match:
            out[name] = int(match.group(1)) + 1
        elif "embed" in (name.split(".") + [""])[1]:  # bert.embeddings.*, electra.embeddings_project.*
            out[name] = 0
        else:
            out[name] = n_layers + 1
    return out, n_layers


def decayed_groups(model: torch.nn.Module, lr: float, decay: float, weight_decay: float,
                   no_decay: set[str]) -> list[dict[str, Any]]:  # fmt: skip
    """AdamW parameter groups with layer-wise learning-rate decay: the head and pooler at `lr`, the top layer at
    lr * decay, each layer below one more factor of `decay`, the embeddings lowest. Weight decay as Trainer does it:
    not for the names in `no_decay` (biases, norms)."""
    depth, n_layers = depths(model)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        d = depth[name]
        decays = name not in no_decay
        group = groups.setdefault((d, decays), {
            "params": [], "lr": lr * decay ** (n_layers + 1 - d), "weight_decay": weight_decay if decays else 0.0,
        })  # fmt: skip
        group["params"].append(param)
    return [groups[key] for key in sorted(groups)]


def reinit_top(model: Any, n: int) -> None:
    """Re-initialise the top `n` transformer layers with the model's own initialisation (a fresh start for the
    layers most specific to the pretraining task; Zhang et al. 2021). The pooler and head are new or kept as
    loaded: this touches the layers alone."""
    if n <= 0:
        return
    layers = {int(m.group(1)): module for name, module in model.named_modules() if (m := _LAYER_MODULE.search(name))}
    if n > len(layers):
        raise ConfigError(f"reinit_layers is {n}, but the model has {len(layers)} layers; give at most {len(layers)}")
    top = sorted(layers)[-n:]
    with torch.no_grad():
        for index in top:
            for module in layers[index].modules():
                for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
                    tensor._is_hf_initialized = False  # transformers' init functions skip tensors loaded as is
                model._init_weights(module)
    logger.info("re-initialised the top %d of %d layers (%s)", n, len(layers), ", ".join(map(str, top)))
