"""`bertfit serve`: the model behind an HTTP API with dynamic batching, and a page to try it (FastAPI + uvicorn)."""

from __future__ import annotations

from typing import Annotated

import typer

from bertfit.cli.common import Dtype, ModelDir, guard, state
from bertfit.serving.settings import API_KEY_ENV, help_of


def _option(name: str, *flags: str) -> typer.Option:
    return typer.Option(*flags, help=help_of(name), show_default=False)


def serve(
    model_dir: ModelDir,
    host: Annotated[str, _option("host")] = "127.0.0.1",
    port: Annotated[int, _option("port")] = 8000,
    max_batch_tokens: Annotated[int | None, _option("max_batch_tokens")] = None,
    max_wait_ms: Annotated[float, _option("max_wait_ms")] = 5.0,
    max_queue: Annotated[int, _option("max_queue")] = 1024,
    max_texts_per_request: Annotated[int, _option("max_texts_per_request")] = 256,
    max_chars: Annotated[int, _option("max_chars")] = 100_000,
    max_upload_mb: Annotated[float, _option("max_upload_mb")] = 100.0,
    api_key: Annotated[
        str | None, typer.Option(envvar=API_KEY_ENV, help=help_of("api_key"), show_default=False, show_envvar=False)
    ] = None,
    dtype: Dtype = "auto",
    device: Annotated[str | None, _option("device")] = None,
    worker_threads: Annotated[int, _option("worker_threads", "--worker-threads", "--workers-threads")] = 4,
    torch_threads: Annotated[int | None, _option("torch_threads")] = None,
    model_process: Annotated[
        bool, typer.Option("--model-process/--in-process", help=help_of("model_process"), show_default=False)
    ] = True,
    no_calibration: Annotated[
        bool, typer.Option("--no-calibration", help="Plain softmax scores, without the temperature fitted in training.")
    ] = False,
    engine: Annotated[str, _option("engine")] = "local",
    replicas: Annotated[int, _option("replicas")] = 1,
    address: Annotated[str | None, _option("address")] = None,
) -> None:
    """Serve a model over HTTP: POST /predict and /explain, GET /health, /info, /metrics, /docs, and a page at /.

    Requests from every connection are batched together. Binds to this machine only unless --host says otherwise.
    SIGTERM finishes the requests in flight, then exits 0.
    """
    from bertfit.serving import ServeConfig
    from bertfit.serving import serve as run

    config = guard(
        lambda: ServeConfig(
            host=host, port=port, max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms, max_queue=max_queue,
            max_texts_per_request=max_texts_per_request, max_chars=max_chars, max_upload_mb=max_upload_mb,
            api_key=api_key, dtype=dtype, device=device, worker_threads=worker_threads, torch_threads=torch_threads,
            model_process=model_process, calibration=not no_calibration, engine=engine, replicas=replicas,
            address=address,
        )
    )  # fmt: skip
    log_level = "debug" if state["debug"] else "warning" if state["quiet"] else "info"
    guard(lambda: run(model_dir, config, log_level), interrupted="stopped")
