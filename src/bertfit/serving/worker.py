"""The forward passes of a served model in a process of their own (`ServeConfig.model_process`, on a CPU).

In one process, the model thread shares the interpreter lock with the event loop: torch takes the lock back after
each of a forward's ~150 operations, and while the event loop answers a batch of requests, each of those takes
waits. Measured on 2 EPYC cores (emotion model, bf16, 64 one-text clients, 2026-12-07): the model thread was on a
core 76% of its time and its second torch thread 57%, so a batch of ~35 requests took 156-172 ms against 110-116 ms
alone; with the forward passes in a child process, 116 ms, and 276 texts/s against 251.

The child loads the same folder with the same engine, device, dtype (as the parent settled it) and thread count, so
its logits are the parent's bit for bit. Over a pipe it answers ("logits", encoded, batch_tokens, batch_size), a
lone request, with `Scorer.logits` on all threads, and ("groups", merged, groups, budget), a batch of several
requests, with `batcher.grouped_logits` in two lanes, each with half of every pass's rows; token ids and logits are
small beside the forward passes they stand for.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np

from bertfit.tokenization import Encoded

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 600  # importing torch and loading a large model on a busy machine
# oneDNN keeps the kernels it built for each input shape it met (bf16 matmuls), up to 1,024 by default; a server's
# batches come in thousands of shapes, so the model process grew by ~350 MiB over its first 1,500 batches and still
# grew at 2 minutes. Capped at 128: flat within 16 MiB from batch 300 to 900, at the same speed (2026-12-07).
PRIMITIVE_CACHE, PRIMITIVE_CACHE_CAPACITY = "ONEDNN_PRIMITIVE_CACHE_CAPACITY", 128
LANES = 2  # the passes of a batch of several requests run side by side, each on a share of the threads


class ModelProcessError(RuntimeError):
    """The model process failed to start, or exited (a server fault: 500, not the client's)."""


class ModelProcess:
    """`logits(encoded, batch_tokens, batch_size)` and `width`, as a Scorer has them, and `grouped_logits` (what
    the batcher calls for a batch of several requests), computed in a child process."""

    def __init__(self, model_dir: str, width: int, load: dict[str, Any], threads: int) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        self.width = width
        self._pipe, theirs = context.Pipe()
        self._lock = threading.Lock()
        level = logging.getLogger("bertfit").getEffectiveLevel()
        self.process = context.Process(target=_run, args=(theirs, model_dir, load, threads, level),
                                       name="bertfit-model", daemon=True)  # fmt: skip
        with _environment(PRIMITIVE_CACHE, str(PRIMITIVE_CACHE_CAPACITY)):  # the child's, unless the user set one
            self.process.start()
        theirs.close()
        self._receive(START_TIMEOUT_S)
        logger.info("the model runs in process %d", self.process.pid)

    def logits(self, encoded: Encoded, batch_tokens: int, batch_size: int | None) -> np.ndarray:
        return self._ask(("logits", encoded, batch_tokens, batch_size))

    def _ask(self, request: tuple) -> Any:
        with self._lock:
            try:
                self._pipe.send(request)
            except (BrokenPipeError, OSError):
                raise ModelProcessError(self._gone()) from None
            return self._receive(None)

    def grouped_logits(self, merged: Encoded, groups: list[np.ndarray], budget: int) -> np.ndarray:
        """`batcher.grouped_logits` of these groups, their rows dealt out to the child's lanes (`lane_shares`)."""
        return self._ask(("groups", merged, groups, budget))

    def close(self, timeout: float = 30) -> None:
        """Stop the child (it finishes the forward it is in)."""
        with self._lock:
            try:
                self._pipe.send(None)
            except (BrokenPipeError, OSError):
                pass
            self.process.join(timeout)
            if self.process.is_alive():
                self.process.terminate()
                self.process.join(5)
            self._pipe.close()

    def _receive(self, timeout: float | None) -> Any:
        if timeout is not None and not self._pipe.poll(timeout):
            self.process.terminate()
            raise ModelProcessError(f"the model process did not start in {timeout} s")
        try:
            kind, value = self._pipe.recv()
        except (EOFError, OSError):
            raise ModelProcessError(self._gone()) from None
        if kind == "error":
            raise ModelProcessError(f"the model process: {value}")
        return value

    def _gone(self) -> str:
        self.process.join(5)
        return f"the model process exited (exit code {self.process.exitcode}); restart the server"


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """`name=value` in this process's environment while the block runs (for a child started in it), unless set."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


def _run(pipe: Any, model_dir: str, load: dict[str, Any], threads: int, level: int) -> None:
    """The child: load the model, then answer each request on the pipe until None (or the parent is gone)."""
    # Ctrl+C reaches every process of the terminal's group; the parent drains, and this process must keep scoring
    # for it until it is told to stop (or the pipe closes, when the parent is gone).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=level, format="%(message)s")
    try:
        import torch
        from transformers.utils import logging as hf_logging

        from bertfit.prediction.classifier import Classifier
        from bertfit.serving.batcher import grouped_logits, lane_shares

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        torch.set_num_threads(threads)
        scorer = Classifier.from_pretrained(model_dir, **load).scorer
    except BaseException as error:  # noqa: BLE001 - whatever it is, the parent reports it in one line
        pipe.send(("error", f"{type(error).__name__}: {error}"))
        return
    n_lanes = LANES if threads >= LANES and scorer.engine == "torch" else 1
    lanes = ThreadPoolExecutor(n_lanes, thread_name_prefix="bertfit-lane") if n_lanes > 1 else None
    pipe.send(("ready", None))
    while True:
        try:
            request = pipe.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        try:
            if request[0] == "groups":  # a batch of several requests: its rows dealt out to the lanes
                _, merged, groups, budget = request
                shares = lane_shares(groups, n_lanes)
                torch.set_num_threads(max(1, threads // n_lanes) if shares else threads)
                try:
                    pipe.send(("logits", grouped_logits(scorer, merged, groups, budget, lanes, shares)))
                finally:
                    torch.set_num_threads(threads)
            else:  # a lone request: scored as predict scores it, on every thread
                pipe.send(("logits", scorer.logits(*request[1:])))
        except Exception as error:  # noqa: BLE001 - one batch's error goes to its requests; the next batch runs
            pipe.send(("error", f"{type(error).__name__}: {error}"))
