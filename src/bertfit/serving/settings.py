"""ServeConfig: every setting of `bertfit serve` and `create_app`, with its default and help text (the CLI's options
are made from these help texts), checked once so that a bad value is one line."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from bertfit.config import PRECISIONS, check_choice, setting
from bertfit.errors import ConfigError

ENGINES = ("local", "ray")
API_KEY_ENV = "BERTFIT_API_KEY"


@dataclass
class ServeConfig:
    """How the server listens, batches and refuses."""

    host: str = setting("127.0.0.1", "Address to bind [127.0.0.1: this machine only; 0.0.0.0: every interface].")
    port: int = setting(8000, "Port to listen on [8000].")
    max_batch_tokens: int | None = setting(
        None, "Padded tokens per forward pass; requests waiting together share it [4096 on CPU, 65536 on GPU]."
    )
    max_wait_ms: float = setting(5.0, "Longest wait after a request arrives for others to batch with it [5].")
    max_queue: int = setting(1024, "Requests waiting for the model; more are refused with 503 [1024].")
    max_texts_per_request: int = setting(256, "Texts in one request; more are refused with 413 [256].")
    max_chars: int = setting(100_000, "Characters in one text; longer ones are refused with 413 [100000].")
    max_upload_mb: float = setting(100.0, "Size of a file uploaded on the page, in MB [100].")
    api_key: str | None = setting(None, f"Required in 'Authorization: Bearer KEY' or 'X-API-Key' [${API_KEY_ENV}].")
    dtype: str = setting("auto", "auto | bf16 | fp16 | fp32 (auto: bf16 on AMX CPUs and new GPUs).")
    device: str | None = setting(None, "cpu | cuda | cuda:1 ... [cuda when there is one].")
    worker_threads: int = setting(4, "Threads that tokenize requests beside the model's thread [4].")
    torch_threads: int | None = setting(
        None, "Threads of the model's forward pass (torch.set_num_threads; the command only) [one per core]."
    )
    model_process: bool = setting(
        True, "On a CPU, run the forward passes in a process of their own, so answering requests never holds them up."
    )
    calibration: bool = setting(True, "Scores with the temperature fitted in training (False: plain softmax).")
    engine: str = setting("local", "local | ray (a Ray Serve deployment).")
    replicas: int = setting(1, "Ray: model replicas, each with its own batching [1].")
    address: str | None = setting(None, "Ray: cluster address [start a local one].")

    def __post_init__(self) -> None:
        if self.api_key is None:
            self.api_key = os.environ.get(API_KEY_ENV) or None
        for name in ("max_queue", "max_texts_per_request", "max_chars", "worker_threads", "replicas"):
            _at_least(name, getattr(self, name), 1)
        if self.torch_threads is not None:
            _at_least("torch_threads", self.torch_threads, 1)
        if self.max_batch_tokens is not None:
            _at_least("max_batch_tokens", self.max_batch_tokens, 8)
        if not 0 <= self.max_wait_ms <= 10_000:
            raise ConfigError(f"max_wait_ms must be between 0 and 10000 (got {self.max_wait_ms}); try 5")
        if not 0 < self.max_upload_mb <= 100_000:
            raise ConfigError(f"max_upload_mb must be more than 0 (got {self.max_upload_mb}); try 100")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535 (got {self.port}); try 8000")
        check_choice("dtype", self.dtype, PRECISIONS)
        check_choice("engine", self.engine, ENGINES)


def help_of(name: str) -> str:
    """The help text of a ServeConfig field (the CLI's option help)."""
    return next(f.metadata["help"] for f in fields(ServeConfig) if f.name == name)


def _at_least(name: str, value: int, least: int) -> None:
    if value < least:
        raise ConfigError(f"{name} must be at least {least} (got {value})")
