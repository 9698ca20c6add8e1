"""bertfit: fine-tune BERT-family encoders for text classification, then label millions of texts fast."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("bertfit")
except metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

from typing import TYPE_CHECKING, Any

from bertfit.config import DataConfig, ModelConfig, RunConfig, TrainConfig, load_config
from bertfit.errors import BertfitError, ConfigError, DataError, MissingDependency, ModelError
from bertfit.labels import LabelSchema

# The heavy parts (torch, transformers, scikit-learn: seconds to import) load on first use, so that
# `bertfit --help` and a Ray worker's start do not pay for what they do not touch.
_LAZY = {
    "Classifier": "prediction.classifier",
    "predict_file": "prediction.classifier",
    "evaluate": "evaluation.evaluate",
    "export": "exporting.export",
    "train": "training.run",
    "TrainResult": "training.run",
    "check": "checks.checker",
    "CheckReport": "checks.checker",
    "serve": "serving",
    "ServeConfig": "serving.settings",
    "review": "reviewing.run",
    "ReviewResult": "reviewing.run",
    "select": "reviewing.select",
    "learning_curve": "reviewing.learning",
    "tune": "tuning.run",
    "TuneResult": "tuning.run",
}

if TYPE_CHECKING:
    from bertfit.checks.checker import CheckReport, check
    from bertfit.evaluation.evaluate import evaluate
    from bertfit.exporting.export import export
    from bertfit.prediction.classifier import Classifier, predict_file
    from bertfit.reviewing.learning import learning_curve
    from bertfit.reviewing.run import ReviewResult, review
    from bertfit.reviewing.select import select
    from bertfit.serving import serve
    from bertfit.serving.settings import ServeConfig
    from bertfit.training.run import TrainResult, train
    from bertfit.tuning.run import TuneResult, tune


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
    "export",
    "predict_file",
    "check",
    "CheckReport",
    "serve",
    "ServeConfig",
    "review",
    "ReviewResult",
    "select",
    "learning_curve",
    "tune",
    "TuneResult",
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
