"""bertfit: fine-tune BERT-family encoders for text classification, then label millions of texts fast."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("bertfit")
except metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

from typing import TYPE_CHECKING, Any

from .config import DataConfig, ModelConfig, RunConfig, TrainConfig, load_config
from .errors import BertfitError, ConfigError, DataError, MissingDependency, ModelError
from .labels import LabelSchema

# The heavy parts (torch, transformers, scikit-learn: seconds to import) load on first use, so that
# `bertfit --help` and a Ray worker's start do not pay for what they do not touch.
_LAZY = {
    "Classifier": "inference",
    "predict_file": "inference",
    "evaluate": "evaluation",
    "train": "training",
    "TrainResult": "training",
    "check": "datacheck",
    "CheckReport": "datacheck",
}

if TYPE_CHECKING:
    from .datacheck import CheckReport, check
    from .evaluation import evaluate
    from .inference import Classifier, predict_file
    from .training import TrainResult, train


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bertfit' has no attribute '{name}'")


__all__ = [
    "Classifier",
    "train",
    "evaluate",
    "predict_file",
    "check",
    "CheckReport",
    "LabelSchema",
    "RunConfig",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "TrainResult",
    "load_config",
    "BertfitError",
    "DataError",
    "ConfigError",
    "ModelError",
    "MissingDependency",
    "__version__",
]
