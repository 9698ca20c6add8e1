"""Dynamic batching: requests from every connection share the model's forward passes.

Each request is tokenized in a worker thread (`Job`: its texts and their token ids) and put in one queue. The model
thread takes what is waiting: starting from the oldest request, it waits at most `max_wait_s` after that request
arrived for others to join, and takes requests in arrival order while their rows, padded to the longest, stay within
`max_batch_tokens` (always at least one request, however long). The rows of all requests taken are scored together
by `Scorer.logits` (length-sorted, cut where a row is under half the longest of its group, then by the same token
budget), then each request's rows are decoded on their own by `Decoder.probabilities` (sliding windows aggregated
per text) and handed back through the request's callback, in the request's order. A request alone in its batch is
scored in exactly the batches `Classifier.predict` would cut, so its scores are bit for bit those of `predict`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bertfit.prediction.decoder import Decoder
from bertfit.prediction.scorer import Scorer
from bertfit.tokenization import Encoded

logger = logging.getLogger(__name__)

Answer = Callable[[np.ndarray | None, BaseException | None], None]


class QueueFull(Exception):
    """The queue holds `max_queue` requests already (the server answers 503 with Retry-After)."""


class Closed(Exception):
    """The batcher is shutting down and takes no more requests."""


@dataclass
class Job:
    """One request's texts (None where empty), their token rows, and where its probabilities go."""

    texts: list[Any]
    encoded: Encoded
    answer: Answer  # called once, on the model thread: (probabilities (texts, labels), None) or (None, error)
    arrived: float = field(default_factory=time.monotonic)
    cancelled: bool = False  # its client went away: skipped if still waiting, its rows dropped otherwise

    @property
    def rows(self) -> int:
        return len(self.encoded.lengths)

    @property
    def longest(self) -> int:
        return int(self.encoded.lengths.max()) if self.rows else 0


@dataclass
class BatchStats:
    """What one forward batch held (for /metrics)."""

    requests: int
    rows: int
    padded_tokens: int
    seconds: float


class Batcher:
    """One model thread scoring the requests of every connection in shared batches."""

    def __init__(
        self,
        scorer: Scorer,
        decoder: Decoder,
        max_batch_tokens: int,
        max_wait_s: float,
        max_queue: int,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self.scorer, self.decoder = scorer, decoder
        self.max_batch_tokens, self.max_wait_s, self.max_queue = max_batch_tokens, max_wait_s, max_queue
        self.on_batch = on_batch
        self._waiting: deque[Job] = deque()
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="bertfit-model", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting for the model."""
        return len(self._waiting)

    def submit(self, job: Job) -> None:
        """Queue a request; QueueFull when `max_queue` are waiting, Closed once shutting down."""
        with self._changed:
            if self._closed:
                raise Closed("the server is shutting down")
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"{len(self._waiting)} requests are waiting for the model (--max-queue)")
            self._waiting.append(job)
            self._changed.notify()

    def close(self, timeout: float | None = None) -> None:
        """Take no more requests, score the ones waiting, and stop the model thread."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            if jobs:
                self._score(jobs)

    def _take(self) -> list[Job] | None:
        """The next batch of requests (None once closed and empty): the oldest waits at most max_wait_s for
        others, unless those waiting already fill the token budget."""
        with self._changed:
            while not self._waiting:
                if self._closed:
                    return None
                self._changed.wait()
            deadline = self._waiting[0].arrived + self.max_wait_s
            while not self._closed and _padded(self._waiting) < self.max_batch_tokens:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return self._pop_batch()

    def _pop_batch(self) -> list[Job]:
        """Requests in arrival order while their rows padded to the longest fit the budget (at least one)."""
        taken: list[Job] = []
        rows = longest = 0
        while self._waiting:
            job = self._waiting[0]
            if job.cancelled:
                self._waiting.popleft()
                continue
            padded = (rows + job.rows) * max(longest, job.longest)
            if taken and padded > self.max_batch_tokens:
                break
            taken.append(self._waiting.popleft())
            rows, longest = rows + job.rows, max(longest, job.longest)
        return taken

    def _score(self, jobs: list[Job]) -> None:
        """One forward over the rows of all `jobs`, then each job's probabilities to its answer."""
        started = time.perf_counter()
        try:
            merged = _merge([job.encoded for job in jobs])
            logits = self.scorer.logits(merged, self.max_batch_tokens, None) if len(jobs) == 1 else self._logits(merged)
        except BaseException as error:  # every waiting request hears of it; the thread goes on
            logger.exception("scoring a batch of %d requests failed", len(jobs))
            for job in jobs:
                _answer(job, None, error)
            return
        start = 0
        for job in jobs:
            part = logits[start : start + job.rows]
            start += job.rows
            if job.cancelled:
                continue
            try:
                present = np.fromiter((t is not None for t in job.texts), dtype=bool, count=len(job.texts))
                _answer(job, self.decoder.probabilities(part, job.encoded.docs, present), None)
            except Exception as error:
                _answer(job, None, error)
        if self.on_batch is not None:
            padded = len(merged.lengths) * int(merged.lengths.max()) if len(merged.lengths) else 0
            self.on_batch(BatchStats(len(jobs), len(merged.lengths), padded, time.perf_counter() - started))

    def _logits(self, merged: Encoded) -> np.ndarray:
        """Logits of several requests' rows, in their order: the rows sorted by length are cut where a row is under
        half the longest of its group, so that short texts are not padded to a long one's length (a batch of
        requests is a random draw of lengths, unlike the sorted windows of `predict`); each group is then cut by the
        token budget. A lone request is scored as `predict` scores it instead."""
        lengths = merged.lengths
        order = np.argsort(-lengths, kind="stable")
        logits = np.empty((len(lengths), self.scorer.width), dtype=np.float32)
        for group in np.split(order, _length_cuts(lengths[order])):
            starts = None if merged.type_starts is None else merged.type_starts[group]
            part = Encoded([merged.ids[i] for i in group], lengths[group], 0, starts)
            logits[group] = self.scorer.logits(part, self.max_batch_tokens, None)
        return logits


def _length_cuts(descending: np.ndarray) -> list[int]:
    """Where to cut lengths sorted longest first: at each row under half the first row of its group."""
    cuts, first = [], 0
    for i, length in enumerate(descending.tolist()):
        if 2 * length < descending[first]:
            cuts.append(i)
            first = i
    return cuts


def _padded(jobs: deque[Job]) -> int:
    """Tokens of the waiting requests' rows padded to the longest of them (one batch, before length-sorting)."""
    live = [job for job in jobs if not job.cancelled]
    return sum(job.rows for job in live) * max((job.longest for job in live), default=0)


def _merge(parts: list[Encoded]) -> Encoded:
    """The rows of several requests as one Encoded (what `Scorer.logits` reads: ids, lengths, pair starts)."""
    ids = [row for part in parts for row in part.ids]
    lengths = np.concatenate([part.lengths for part in parts]) if parts else np.zeros(0, dtype=np.int64)
    starts = None
    if any(part.type_starts is not None for part in parts):
        starts = np.concatenate([p.type_starts if p.type_starts is not None else p.lengths for p in parts])
    return Encoded(ids, lengths.astype(np.int64), sum(part.truncated for part in parts), starts)


def _answer(job: Job, proba: np.ndarray | None, error: BaseException | None) -> None:
    try:
        job.answer(proba, error)
    except Exception:  # an answer that cannot be delivered (its event loop closed) must not stop the thread
        logger.debug("could not answer a request", exc_info=True)
