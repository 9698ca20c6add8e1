"""The FastAPI app: /predict, /explain, /health, /info, /metrics (and the page's routes, `page.py`).

Status codes: 401 for a wrong or missing API key (when one is set), 413 past a limit (the limit is in the message),
422 for malformed JSON, wrong types or a request the model cannot take, 503 with Retry-After when the queue is full
or the server is shutting down. Errors are `{"detail": "one line"}`, as FastAPI gives them.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bertfit import __version__
from bertfit.errors import BertfitError, MissingDependency
from bertfit.prediction.classifier import Classifier
from bertfit.serving.batcher import Closed, QueueFull
from bertfit.serving.schemas import ExplainRequest, ExplainResponse, Health, PredictRequest, PredictResponse
from bertfit.serving.service import ClientGone, Service, TooLarge
from bertfit.serving.settings import ServeConfig

RETRY_AFTER = "1"  # seconds: a full queue drains in well under that at the default limits
JSON_LIMIT_PER_TEXT = 64  # bytes of JSON around each text ("...", [..]), beyond 4 bytes per character (a pair: 2 texts)


def create_app(model_dir: str | Path, config: ServeConfig | None = None, classifier: Classifier | None = None) -> Any:
    """A FastAPI app serving the model in `model_dir` (loaded here, so a bad folder fails before serving).

    The model thread starts, and a warm-up request runs, in the app's lifespan (uvicorn and `TestClient` run it);
    /health answers "ok" from then on. `classifier`: an already loaded model to serve instead of loading one.
    """
    config = config or ServeConfig()
    clf = classifier or Classifier.from_pretrained(model_dir, device=config.device, dtype=config.dtype,
                                                   calibration=config.calibration)  # fmt: skip
    service = Service(clf, config, own_model=classifier is None)
    app = FastAPI(title="bertfit", version=__version__, lifespan=_lifespan(service),
                  description=f"Text classification with the model '{service.model_id['id']}'.")  # fmt: skip
    app.state.service = service
    app.add_middleware(Limits, service=service)
    _add_errors(app)
    _add_api(app, service)
    from bertfit.serving.page import add_page

    add_page(app, service)
    return app


def _lifespan(service: Service) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.limiter = anyio.CapacityLimiter(service.config.worker_threads)
        await anyio.to_thread.run_sync(service.start)
        try:
            yield
        finally:  # uvicorn gets here after the requests in flight have been answered
            await anyio.to_thread.run_sync(service.stop)
            files = getattr(app.state, "files", None)
            if files is not None:
                await anyio.to_thread.run_sync(files.close)

    return lifespan


def api_key_checker(service: Service) -> Any:
    """A dependency: 401 unless the request carries the API key (when the server has one). A coroutine, so that
    FastAPI runs it on the event loop: a plain function would cost each request a hop to a worker thread and back."""

    async def check(request: Request) -> None:
        key = service.config.api_key
        if not key:
            return
        given = request.headers.get("x-api-key") or ""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given = given or token.strip()
        if not hmac.compare_digest(given.encode(), key.encode()):
            raise HTTPException(401, "missing or wrong API key; send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip

    return check


def _add_api(app: FastAPI, service: Service) -> None:
    keyed = [Depends(api_key_checker(service))]

    @app.post("/predict", response_model=PredictResponse, response_model_exclude_unset=True, dependencies=keyed)
    async def predict(body: PredictRequest, request: Request) -> Any:
        """Labels and scores of each text, as `Classifier.predict` gives them."""
        service.check_texts(body.texts)
        texts, encoded = await anyio.to_thread.run_sync(service.encode, body.texts, limiter=service.limiter)
        try:
            proba = await service.score(texts, encoded, request.receive)
        except ClientGone:
            return Response(status_code=499)  # nobody reads it; counted in /metrics
        service.metrics.rows.inc(len(texts))
        return {"model": service.model_id, "predictions": service.records(proba, body.probs)}

    @app.post("/explain", response_model=ExplainResponse, dependencies=keyed)
    async def explain(body: ExplainRequest) -> Any:
        """Word attributions (Integrated Gradients), as `Classifier.explain` gives them; null for empty texts."""
        found = await anyio.to_thread.run_sync(service.explain, body.texts, body.label, body.steps)
        return {"model": service.model_id, "explanations": found}

    @app.get("/health", response_model=Health)
    async def health() -> Any:
        """200 "ok" once the model is loaded and warmed up; 503 while loading or shutting down."""
        ok = service.status == "ok"
        return JSONResponse({"status": service.status}, status_code=200 if ok else 503)

    @app.get("/info", dependencies=keyed)
    async def info() -> dict[str, Any]:
        """Labels, base model, max length, validation metrics, calibration, thresholds, versions, serving settings."""
        return service.info()

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus text: requests, rows, batch sizes, queue depth, latencies."""
        return Response(service.metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _add_errors(app: FastAPI) -> None:
    def refuse(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status, headers=headers)

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, error: QueueFull) -> JSONResponse:
        return refuse(503, f"busy: {error}; retry after {RETRY_AFTER} s", {"Retry-After": RETRY_AFTER})

    @app.exception_handler(Closed)
    async def closed(request: Request, error: Closed) -> JSONResponse:
        return refuse(503, str(error), {"Retry-After": RETRY_AFTER})

    @app.exception_handler(BertfitError)
    async def user_error(request: Request, error: BertfitError) -> JSONResponse:
        status = 413 if isinstance(error, TooLarge) else 501 if isinstance(error, MissingDependency) else 422
        return refuse(status, str(error))


class Limits:
    """ASGI middleware: refuses a body over the limit from its Content-Length before it is read (413), and counts
    every answer by endpoint and status in /metrics."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            limit = self._body_limit(scope["path"])
            length = dict(scope["headers"]).get(b"content-length", b"0")
            if length.isdigit() and int(length) > limit:
                answer = JSONResponse({"detail": f"the request body is over {limit} bytes"}, status_code=413)
                await answer(scope, receive, counted)
                return
            await self.app(scope, receive, counted)
        finally:
            self.service.metrics.answered(scope["path"], status[0], time.perf_counter() - started)

    def _body_limit(self, path: str) -> int:
        config = self.service.config
        if path.startswith("/files"):
            return int(config.max_upload_mb * 1e6)
        return config.max_texts_per_request * 2 * (4 * config.max_chars + JSON_LIMIT_PER_TEXT) + 65536
