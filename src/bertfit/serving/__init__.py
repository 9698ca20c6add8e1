"""Serving a model over HTTP: `create_app` (FastAPI: /predict, /explain, /health, /info, /metrics and a page at /)
with dynamic batching across connections, and `serve` (uvicorn). Needs `pip install 'bertfit[serve]'`.

    from bertfit.serving import create_app
    app = create_app("models/emotion")          # then: uvicorn.run(app), or mount it in an app of your own
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bertfit.errors import MissingDependency
from bertfit.serving.settings import ServeConfig

if TYPE_CHECKING:
    from bertfit.prediction.classifier import Classifier

PACKAGES = ("fastapi", "uvicorn", "prometheus_client")


def require_serve() -> None:
    """MissingDependency (with the install hint) unless FastAPI, uvicorn and prometheus-client are installed."""
    for package in PACKAGES:
        if find_spec(package) is None:
            raise MissingDependency(package.replace("_", "-"), "serve", "Serving a model over HTTP")


def create_app(model_dir: str | Path, config: ServeConfig | None = None, classifier: Classifier | None = None) -> Any:
    """A FastAPI app serving the model in `model_dir`; see `bertfit.serving.app.create_app`."""
    require_serve()
    from bertfit.serving.app import create_app as build

    return build(model_dir, config, classifier)


def serve(model_dir: str | Path, config: ServeConfig | None = None, log_level: str = "info") -> None:
    """Serve the model until SIGTERM or Ctrl+C; see `bertfit.serving.runner.serve`."""
    require_serve()
    from bertfit.serving.runner import serve as run

    run(model_dir, config, log_level)


__all__ = ["ServeConfig", "create_app", "serve", "require_serve"]
