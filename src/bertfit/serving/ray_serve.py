"""`bertfit serve --engine ray`: the same app as a Ray Serve deployment, one model per replica.

Each replica builds the app of `create_app` (its own model, its own batcher: requests routed to a replica share its
batches) and answers the HTTP requests Ray Serve's proxy hands it by running them through that app in-process, so
the API, its limits and its status codes are the local server's. Needs `pip install 'ray[serve]'`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from bertfit.errors import MissingDependency
from bertfit.serving.settings import ServeConfig

logger = logging.getLogger(__name__)

HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "host"}


def load_serve() -> Any:
    try:
        from ray import serve
    except ImportError:
        raise MissingDependency("ray[serve]", "ray-serve", "Serving on Ray (--engine ray)") from None
    return serve


class Replica:
    """One replica: the model's app, started on the first request (its lifespan: model thread and warm-up)."""

    def __init__(self, model_dir: str, config: ServeConfig) -> None:
        from bertfit.serving.app import create_app

        # the forward passes stay in the replica's process: Ray gives each replica its CPUs, and places it
        self.app = create_app(model_dir, replace(config, model_process=False))
        self._lifespan: Any = None
        self._starting = asyncio.Lock()

    async def _started(self) -> None:
        async with self._starting:
            if self._lifespan is None:
                lifespan = self.app.router.lifespan_context(self.app)
                await lifespan.__aenter__()
                self._lifespan = lifespan

    async def __call__(self, request: Any) -> Any:
        """The request Ray Serve's proxy received, answered by the app (status, headers and body as they are)."""
        import httpx
        from starlette.responses import Response

        await self._started()
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_HEADERS]
        transport = httpx.ASGITransport(app=self.app, client=(request.client.host if request.client else "ray", 0))
        async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
            answer = await client.request(request.method, request.url.path, params=request.query_params,
                                          headers=headers, content=await request.body())  # fmt: skip
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
        return Response(answer.content, status_code=answer.status_code, headers=kept)


def deployment(model_dir: str | Path, config: ServeConfig) -> Any:
    """The Ray Serve application: `config.replicas` replicas of `Replica`, each taking up to `max_queue` requests
    at once (Ray Serve's default of a few would starve the batcher)."""
    serve = load_serve()
    replica = serve.deployment(name="bertfit", num_replicas=config.replicas, max_ongoing_requests=config.max_queue,
                               ray_actor_options={"num_cpus": 1})(Replica)  # fmt: skip
    return replica.bind(str(Path(model_dir).resolve()), config)


def serve_on_ray(model_dir: str | Path, config: ServeConfig) -> None:
    """Deploy on the cluster at `config.address` (or a local one) behind Ray Serve's proxy on host:port; stop the
    deployment on SIGTERM or Ctrl+C."""
    import ray

    serve = load_serve()
    from bertfit.modeling import require_model_dir

    require_model_dir(model_dir)  # a bad folder fails here, not in every replica
    ray.init(address=config.address, logging_level=logging.WARNING)
    stop = threading.Event()
    previous: dict[int, Any] = {}
    try:
        serve.start(http_options={"host": config.host, "port": config.port})
        serve.run(deployment(model_dir, config), name="bertfit", route_prefix="/")
        # after Ray's own start-up, which may install handlers of its own
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        logger.info("serving on http://%s:%d with %d Ray Serve replicas", config.host, config.port, config.replicas)
        while not stop.wait(0.5):
            pass
        serve.delete("bertfit")  # the replicas answer what they hold, then stop
    finally:
        serve.shutdown()
        ray.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
