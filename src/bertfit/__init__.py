"""bertfit: fine-tune BERT-family encoders for text classification, then label millions of texts fast."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("bertfit")
except metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

from .config import DataConfig, ModelConfig, RunConfig, TrainConfig, load_config
from .errors import BertfitError, ConfigError, DataError, MissingDependency, ModelError
from .evaluation import evaluate
from .inference import Classifier, predict_file
from .labels import LabelSchema
from .training import TrainResult, train

__all__ = [
    "Classifier",
    "train",
    "evaluate",
    "predict_file",
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
