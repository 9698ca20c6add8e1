"""Dynamic batching: requests from every connection share the model's forward passes.

Each request is tokenized in a worker thread (`Job`: its texts and their token ids) and put in one queue. The model
thread takes what is waiting: starting from the oldest request, it waits at most `max_wait_s` after that request
arrived for others to join, and takes requests in arrival order while their rows, padded to the longest, stay within
`max_batch_tokens` (always at least one request, however long). The rows of all requests taken are scored together
by `Scorer.logits` (length-sorted, then cut into the forward passes of least cost: `_group_cuts`), then each
request's rows are decoded on their own by `Decoder.probabilities` (sliding windows aggregated per text) and handed
back through the request's callback, in the request's order. A request alone in its batch is scored in exactly the
batches `Classifier.predict` would cut, so its scores are bit for bit those of `predict`. The scorer may be a
`worker.ModelProcess`: the same forward passes in a child process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bertfit.prediction.decoder import Decoder
from bertfit.prediction.scorer import Scorer
from bertfit.tokenization import Encoded, round_up

logger = logging.getLogger(__name__)

# A forward pass's own cost in padded tokens: on 2 EPYC cores (bf16, all-MiniLM-L6-v2), a pass took ~4 ms plus
# ~66 us per padded token from 1x16 to 64x32 tokens (2026-12-07); on a GPU the launch costs dwarf the tokens.
CPU_PASS_COST, GPU_PASS_COST = 64, 4096
# A batch of several requests is padded to a multiple of 8 tokens: fewer shapes for oneDNN's kernels and for the
# heap. A loop of random 20-45-row batches in two lanes grew from 1,257 to 1,507 MiB over batches 200-400 padded to
# the longest row, from 858 to 887 MiB padded to a multiple of 8 (2026-12-07).
PAD_MULTIPLE = 8
MAX_PASS_ROWS = 512  # longest pass the cut search considers (more rows of the same length cost the same cut anyway)

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
    padded_tokens: int  # each pass's rows padded to its longest (rounded up to PAD_MULTIPLE); a lone request's rows
    seconds: float  # padded to their longest


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
        pass_cost: int = CPU_PASS_COST,
    ) -> None:
        self.scorer, self.decoder = scorer, decoder
        self.pass_cost = pass_cost  # a forward pass's own cost, in padded tokens (see _group_cuts)
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
            if len(jobs) == 1:
                logits = self.scorer.logits(merged, self.max_batch_tokens, None)
                padded = len(merged.lengths) * int(merged.lengths.max()) if len(merged.lengths) else 0
            else:
                logits, padded = self._logits(merged)
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
            self.on_batch(BatchStats(len(jobs), len(merged.lengths), padded, time.perf_counter() - started))

    def _logits(self, merged: Encoded) -> tuple[np.ndarray, int]:
        """Logits of several requests' rows, in their order, and the padded tokens of its passes. A batch of
        requests is a random draw of lengths, unlike the sorted windows of `predict`: padded to its longest row, one
        pass over 35 emotion texts took 154-161 ms on 2 EPYC cores, cut where a length halves 110-116 ms, cut at the
        least cost 100-105 ms (2026-12-07). Each group is then cut by the token budget. A lone request is scored as
        `predict` scores it instead."""
        order = np.argsort(-merged.lengths, kind="stable")
        groups = np.split(order, _group_cuts(merged.lengths[order], self.max_batch_tokens, self.pass_cost))
        padded = sum(len(group) * int(_padded_length(merged.lengths[group[0]])) for group in groups)
        scored = getattr(self.scorer, "grouped_logits", None)  # a ModelProcess runs the groups side by side
        if scored is not None:
            return scored(merged, groups, self.max_batch_tokens), padded
        return grouped_logits(self.scorer, merged, groups, self.max_batch_tokens), padded


def grouped_logits(
    scorer: Scorer,
    merged: Encoded,
    groups: list[np.ndarray],
    budget: int,
    lanes: ThreadPoolExecutor | None = None,
    shares: list[list[np.ndarray]] | None = None,
) -> np.ndarray:
    """Logits of `merged`'s rows in their order, scored one group of rows at a time (each cut by the token budget).
    With `lanes`, a pool of threads, and `shares` (`lane_shares`), each share of the rows runs on its own thread,
    side by side (torch releases the interpreter lock inside each operation)."""
    logits = np.empty((len(merged.lengths), scorer.width), dtype=np.float32)

    def run(lane: list[np.ndarray]) -> None:
        for group in lane:
            starts = None if merged.type_starts is None else merged.type_starts[group]
            part = Encoded([merged.ids[i] for i in group], merged.lengths[group], 0, starts)
            logits[group] = scorer.logits(part, budget, None, PAD_MULTIPLE)

    if lanes is None or not shares:
        run(groups)
    else:
        list(lanes.map(run, shares))
    return logits


def lane_shares(groups: list[np.ndarray], n_lanes: int) -> list | None:
    """Each group's rows dealt out to `n_lanes` lanes in turn, the turn running on from group to group: the rows are
    sorted longest first, so every lane gets rows of the same lengths and the lanes cost the same. None for one
    lane or one row.

    Alone, two lanes of one thread each score a batch as fast as one lane of two threads (36 random emotion texts:
    350-395 rows/s either way). Beside the server's event loop they are faster: a pass on two threads waits for the
    slower of them, and the loop takes one of the two cores now and then; a lane on one thread only slows. On 2 EPYC
    cores (bench/serve.py, bf16, 2026-12-07): 258-305 texts/s at 64 one-text clients and 157-183 at 8, against 268
    and 136 with whole passes shared out to the lanes where they split evenly (else one lane of two threads).
    """
    if n_lanes < 2 or sum(len(group) for group in groups) < 2:
        return None
    shares: list[list[np.ndarray]] = [[] for _ in range(n_lanes)]
    turn = 0
    for group in groups:
        for lane in range(n_lanes):
            part = group[(lane - turn) % n_lanes :: n_lanes]
            if len(part):
                shares[lane].append(part)
        turn = (turn + len(group)) % n_lanes
    return shares


def _group_cuts(descending: np.ndarray, budget: int, pass_cost: int) -> list[int]:
    """Where to cut lengths sorted longest first into forward passes, at the least cost in tokens: a pass costs
    `pass_cost` plus its rows padded to its first (longest) row, and holds at most `budget` padded tokens (a lone
    row always fits). Exact (dynamic programming over the cut points; a pass of at most MAX_PASS_ROWS rows)."""
    n = len(descending)
    lengths = _padded_length(descending.astype(np.int64))
    cost = np.zeros(n + 1)
    first = np.zeros(n + 1, dtype=np.int64)  # the first row of the last pass of the best cut of rows [0, j)
    for j in range(1, n + 1):
        low = max(0, j - MAX_PASS_ROWS)
        starts = np.arange(low, j)
        tokens = (j - starts) * lengths[low:j]
        total = cost[low:j] + pass_cost + tokens
        total[(tokens > budget) & (starts < j - 1)] = np.inf
        best = int(np.argmin(total))  # the first of equal costs: the longer pass
        cost[j], first[j] = total[best], low + best
    cuts, j = [], n
    while j > 0:
        j = int(first[j])
        cuts.append(j)
    return sorted(cuts)[1:]  # without 0


def _padded_length(longest: Any) -> Any:
    """A pass's padded length: its longest row's, rounded up to PAD_MULTIPLE (the pad never passes max_length, so
    this may overstate the last few tokens of a pass at the limit; the cut stays a good one)."""
    return round_up(longest, PAD_MULTIPLE)


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
