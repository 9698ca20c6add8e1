"""/metrics: Prometheus counters and histograms of requests, rows, batches and the queue (prometheus-client).

Each app has its own registry, so that several apps in one process (tests, embedding) count apart.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bertfit.serving.batcher import BatchStats

SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
TOKENS = (64, 256, 1024, 2048, 4096, 8192, 16384, 65536)
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
ENDPOINTS = frozenset({"/predict", "/explain", "/files", "/health", "/info", "/metrics", "/"})


class Metrics:
    def __init__(self, queue_depth: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("bertfit_requests", "HTTP requests answered, by endpoint and status code.",
                                ["endpoint", "status"], registry=r)  # fmt: skip
        self.latency = Histogram("bertfit_request_seconds", "Time from a request's arrival to its answer.",
                                 ["endpoint"], buckets=SECONDS, registry=r)  # fmt: skip
        self.rows = Counter("bertfit_rows", "Texts predicted (rows of answered /predict requests).", registry=r)
        self.batch_requests = Histogram("bertfit_batch_requests", "Requests scored together in one batch.",
                                        buckets=SIZES, registry=r)  # fmt: skip
        self.batch_rows = Histogram("bertfit_batch_rows", "Token rows scored in one batch.", buckets=SIZES, registry=r)
        self.batch_tokens = Histogram("bertfit_batch_padded_tokens", "Padded tokens of one batch.", buckets=TOKENS,
                                      registry=r)  # fmt: skip
        self.batch_seconds = Histogram("bertfit_batch_seconds", "Model time of one batch.", buckets=SECONDS,
                                       registry=r)  # fmt: skip
        self.disconnected = Counter("bertfit_disconnected", "Requests whose client went away before the answer.",
                                    registry=r)  # fmt: skip
        depth = Gauge("bertfit_queue_depth", "Requests waiting for the model.", registry=r)
        depth.set_function(queue_depth)

    def batch(self, stats: BatchStats) -> None:
        """The model thread's report of one batch."""
        self.batch_requests.observe(stats.requests)
        self.batch_rows.observe(stats.rows)
        self.batch_tokens.observe(stats.padded_tokens)
        self.batch_seconds.observe(stats.seconds)

    def answered(self, path: str, status: int, seconds: float) -> None:
        endpoint = path if path in ENDPOINTS else "/files" if path.startswith("/files") else "other"
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)
