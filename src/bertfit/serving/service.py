"""Service: one loaded Classifier and what every endpoint shares: the batcher, the explainer, limits and metrics.

The event loop only awaits: tokenizing runs in worker threads (at most `worker_threads` at once), scoring on the
batcher's model thread, explaining in a worker thread on its own fp32 copy of the weights (captum hooks the
embedding layer while it runs, which must never touch the batches that predictions ride).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import threading
from importlib import metadata
from typing import Any

import numpy as np

from bertfit.data.sample import read_validation_sample
from bertfit.errors import BertfitError, ConfigError
from bertfit.modeling import describe_model, library_versions
from bertfit.prediction.classifier import Classifier, clean_input
from bertfit.prediction.dtype_choice import TIMED_ROWS
from bertfit.prediction.loading import explainer_scorer
from bertfit.prediction.scorer import Scorer
from bertfit.prediction.stream import weights_stamp
from bertfit.serving.batcher import CPU_PASS_COST, GPU_PASS_COST, Batcher, Job
from bertfit.serving.metrics import Metrics
from bertfit.serving.settings import ServeConfig
from bertfit.serving.worker import ModelProcess
from bertfit.tokenization import Encoded


class TooLarge(ConfigError):
    """More texts or characters than the server takes (413)."""


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


class Service:
    """The model behind the endpoints; `start` before the first request, `stop` after the last."""

    def __init__(self, clf: Classifier, config: ServeConfig, own_model: bool = False) -> None:
        """`own_model`: `clf` was loaded from its folder for this service (not handed in), so a model process
        (`config.model_process`) can load the same folder again."""
        self.clf, self.config = clf, config
        self.model_process: ModelProcess | None = None
        self._use_process = own_model and config.model_process and clf.device == "cpu" and clf.model_dir is not None
        self.batch_tokens = config.max_batch_tokens or clf.default_batch_tokens()
        self.metrics = Metrics(lambda: self.batcher.depth)
        pass_cost = CPU_PASS_COST if clf.device == "cpu" else GPU_PASS_COST
        self.batcher = Batcher(clf.scorer, clf.decoder, self.batch_tokens, config.max_wait_ms / 1000,
                               config.max_queue, self.metrics.batch, pass_cost)  # fmt: skip
        self.model_id = model_identity(clf)
        self.status = "loading"
        self.limiter: Any = None  # anyio.CapacityLimiter of the tokenizing threads, made in the app's event loop
        self._explainer: Scorer | None = None
        self._explaining = threading.Lock()

    @property
    def pairs(self) -> bool:
        return self.clf.pair_col is not None

    def start(self) -> None:
        """Score the warm-up rows, start the model thread and run one request through it, so the first real one is
        not the slow one."""
        sample = self.warm_up()
        if self._use_process:
            self.start_model_process(sample)
        self.batcher.start()
        done, failed = threading.Event(), []

        def answer(proba: np.ndarray | None, error: BaseException | None) -> None:
            failed.extend([error] if error is not None else [])
            done.set()

        texts = [("warm up", "warm up") if self.pairs else "warm up"]
        self.batcher.submit(Job(texts, self.clf.scorer.encode_present(texts), answer))
        done.wait()
        if failed:
            raise failed[0]
        self.status = "ok"

    def warm_up(self) -> None:
        """Score up to TIMED_ROWS rows (as many as `--dtype auto` times) of the model's validation sample, written by
        `bertfit train`, before the model thread starts: with dtype auto the dtype is then measured on rows of the
        model's own data in batch-sized shapes, not on the one short text of the warm-up request, and the kernels of
        real batch shapes are built before the first request. A folder without a sample warms up on that request.
        Returns the rows scored (None without a sample)."""
        found = read_validation_sample(self.clf.model_dir) if self.clf.model_dir else None
        if found is None or not len(found[0].lengths):
            return None
        sample, n = found[0], min(TIMED_ROWS, len(found[0].lengths))
        starts = None if sample.type_starts is None else sample.type_starts[:n]
        rows = Encoded(sample.ids[:n], sample.lengths[:n], 0, starts)
        self.clf.scorer.logits(rows, self.batch_tokens, None)
        return rows

    def start_model_process(self, sample: Encoded | None) -> None:
        """Move the batches' forward passes into a child process that loads the same folder, engine, device and
        thread count, in the dtype this process settled on (see `worker`); it warms up on the same rows."""
        import torch

        scorer = self.clf.scorer
        dtype = scorer.dtype if scorer.engine == "torch" else self.config.dtype  # an export's engine picks its own
        load = {"device": self.clf.device, "engine": scorer.engine, "dtype": dtype,
                "calibration": self.config.calibration}  # fmt: skip
        self.model_process = ModelProcess(str(self.clf.model_dir), scorer.width, load, torch.get_num_threads())
        if sample is not None:
            self.model_process.logits(sample, self.batch_tokens, None)
        self.batcher.scorer = self.model_process

    def stop(self) -> None:
        """Score what is waiting, then stop the model thread (and the model process)."""
        self.status = "draining"
        self.batcher.close()
        if self.model_process is not None:
            self.model_process.close()

    # -- /predict ------------------------------------------------------------------------------------------------

    def check_texts(self, texts: list[Any]) -> None:
        """413 past the limits; 422 for a pair where the model takes one text, or one text where it takes pairs."""
        self.check_limits(texts)
        for i, value in enumerate(texts):
            if value is not None and isinstance(value, (tuple, list)) != self.pairs:
                want = "[text, second text] pairs" if self.pairs else "single texts, not pairs"
                raise ConfigError(f"texts[{i}]: this model takes {want}")

    def check_limits(self, texts: list[Any]) -> None:
        """413 for more texts in a request, or more characters in a text, than the server takes."""
        limit = self.config.max_texts_per_request
        if len(texts) > limit:
            raise TooLarge(f"{len(texts)} texts in one request; the limit is {limit} (--max-texts-per-request)")
        for i, value in enumerate(texts):
            for side in value if isinstance(value, (tuple, list)) else (value,):
                if side is not None and len(side) > self.config.max_chars:
                    raise TooLarge(f"texts[{i}] has {len(side)} characters; the limit is {self.config.max_chars} "
                                   "(--max-chars)")  # fmt: skip

    def encode(self, texts: list[Any]) -> tuple[list[Any], Encoded]:
        """Texts cleaned as `predict` cleans them (None where empty) and their token rows (a worker thread)."""
        cleaned = [clean_input(t) for t in texts]
        return cleaned, self.clf.scorer.encode_present(cleaned)

    async def score(self, texts: list[Any], encoded: Encoded, receive: Any) -> np.ndarray:
        """Probabilities (texts, labels) from the model thread; ClientGone if the client leaves first (its rows are
        then skipped, or dropped if already in a batch). QueueFull and Closed come from the batcher."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future = loop.create_future()

        def settle(proba: np.ndarray | None, error: BaseException | None) -> None:
            loop.call_soon_threadsafe(_settle, answer, proba, error)

        job = Job(texts, encoded, settle)
        self.batcher.submit(job)
        gone = asyncio.ensure_future(_disconnect(receive))
        try:
            await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not answer.done():
                job.cancelled = True
        if not answer.done():
            self.metrics.disconnected.inc()
            raise ClientGone
        return answer.result()

    def records(self, proba: np.ndarray, probs: bool) -> list[dict[str, Any]]:
        """`Classifier.predict`'s records (NaN scores as None, for JSON), with every label's score if `probs`."""
        rows = self.clf.decoder.records(proba)
        if self.clf.schema.multi_label:
            return rows
        labels = self.clf.labels
        for row, values in zip(rows, proba):
            row["score"] = _number(row["score"])
            if probs:
                row["probs"] = {name: _number(float(v)) for name, v in zip(labels, values)}
        return rows

    # -- /explain ------------------------------------------------------------------------------------------------

    def explain(self, texts: list[str | None], label: str | None, steps: int) -> list[dict[str, Any] | None]:
        """`Classifier.explain` of the non-empty texts (None for the empty ones), on the explainer's own weights."""
        from bertfit.explain import explain_parts

        self.check_limits(texts)
        cleaned = [clean_input(t) for t in texts]
        present = [t for t in cleaned if t is not None]
        with self._explaining:
            found = explain_parts(self._explain_scorer(), self.clf.decoder, self.clf.pair_col, present, label,
                                  steps) if present else []  # fmt: skip
        results = iter(found)
        return [None if t is None else next(results).to_dict() for t in cleaned]

    def _explain_scorer(self) -> Scorer:
        """The explainer's own fp32 scorer (the model thread keeps scoring on its own weights meanwhile); an export's
        kept torch weights, or a ConfigError (422) when the folder has none."""
        if self._explainer is None:
            self._explainer = explainer_scorer(self.clf.scorer, self.clf.model_dir, self.clf.engine)
        return self._explainer

    # -- /info ---------------------------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """What the model folder knows (as `bertfit info`), how it is scored, and how the server batches."""
        clf = self.clf
        try:
            details = describe_model(clf.model_dir) if clf.model_dir else {}
        except BertfitError:  # a plain Hugging Face folder: no bertfit.json
            details = {}
        details = details or {"labels": clf.labels, "versions": library_versions()}
        served = {k: v for k, v in vars(self.config).items() if k not in ("api_key", "host", "port")}
        versions = {"served_with": {p: _version(p) for p in ("bertfit", "torch", "transformers", "fastapi")}}
        return {
            **details, "model": self.model_id, "multi_label": clf.schema.multi_label, "pairs": self.pairs,
            "calibration": clf.meta.get("calibration"), "temperature": clf.temperature,
            "thresholds": dict(zip(clf.labels, map(float, clf.thresholds))) if clf.schema.multi_label else None,
            "long": clf.long, "stride": clf.stride, "aggregate": clf.aggregate, "scored_max_length": clf.max_length,
            "device": clf.device, "engine": clf.engine, "dtype": clf.dtype,
            "serving": {**served, "max_batch_tokens": self.batch_tokens, "model_process": bool(self.model_process)},
            **versions,
        }  # fmt: skip


def model_identity(clf: Classifier) -> dict[str, str]:
    """The model's name (its folder) and version (when it was trained, else a stamp of its files' sizes)."""
    folder = clf.model_dir
    version = clf.meta.get("created")
    if not version:
        stamp = [(name, size) for name, size, _ in weights_stamp(folder)]
        version = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:12]
    return {"id": folder.name if folder else "model", "version": str(version)}


def _settle(answer: asyncio.Future, proba: np.ndarray | None, error: BaseException | None) -> None:
    if answer.done():
        return
    if error is not None:
        answer.set_exception(error)
    else:
        answer.set_result(proba)


async def _disconnect(receive: Any) -> None:
    """Returns once the client has closed the connection (the ASGI 'http.disconnect' message)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
