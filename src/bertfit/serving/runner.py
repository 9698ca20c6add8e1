"""`bertfit serve`: the app under uvicorn on this machine, or as a Ray Serve deployment (`engine="ray"`).

SIGTERM (and Ctrl+C) stop taking connections, answer the requests in flight, run the app's shutdown (the model
thread scores what is waiting, uploaded files are deleted), then return: the process exits 0 after a SIGTERM.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

from bertfit.serving.settings import ServeConfig

logger = logging.getLogger(__name__)

DRAIN_SECONDS = 60  # longest wait for the requests in flight after SIGTERM before closing their connections


def serve(model_dir: str | Path, config: ServeConfig | None = None, log_level: str = "info") -> None:
    """Serve the model in `model_dir` until SIGTERM or Ctrl+C (see `create_app` for the API)."""
    config = config or ServeConfig()
    if config.engine == "ray":
        from bertfit.serving.ray_serve import serve_on_ray

        serve_on_ray(model_dir, config)
        return
    import torch
    import uvicorn

    from bertfit.serving.app import create_app

    if config.torch_threads:  # process-wide, so set by the command, never by create_app
        torch.set_num_threads(config.torch_threads)

    app = create_app(model_dir, config)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level,
                                           access_log=False, timeout_graceful_shutdown=DRAIN_SECONDS))  # fmt: skip
    with _sigterm_exits_cleanly():
        server.run()
    logger.info("stopped: every request in flight was answered")


class _sigterm_exits_cleanly:
    """uvicorn re-raises the signal that stopped it once it has shut down, to the handler that was there before it
    started; with Python's default for SIGTERM that kills the process (exit -15) after a clean drain. A handler of
    our own that does nothing turns that into a normal return, so the command exits 0."""

    def __enter__(self) -> None:
        self.previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
