"""`bertfit serve --engine ray`: the same app as a Ray Serve deployment answers as the local server does, on a local
2-CPU Ray cluster (conftest's `ray_cluster`)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="serving needs: pip install 'bertfit[serve]'")
pytest.importorskip("ray.serve", reason="the ray engine of serve needs: pip install 'ray[serve]'")
import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from ray import serve  # noqa: E402

from bertfit.prediction.classifier import Classifier  # noqa: E402
from bertfit.serving import ServeConfig, create_app  # noqa: E402
from bertfit.serving.ray_serve import deployment  # noqa: E402

TEXTS = ["a great film", "", "the plot was awful and boring", None, "i love it, very nice"]


@pytest.mark.slow  # a Ray cluster and its worker processes: seconds each
def test_ray_serve_answers_as_the_local_server(ray_cluster: None, tiny_trained: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = ServeConfig(dtype="fp32", replicas=2, api_key="k")
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(deployment(tiny_trained, config), name="bertfit", route_prefix="/")
        url, key = f"http://127.0.0.1:{port}", {"X-API-Key": "k"}
        answers = [httpx.post(f"{url}/predict", json={"texts": TEXTS, "probs": True}, headers=key, timeout=60)
                   for _ in range(4)]  # fmt: skip
        refused = httpx.post(f"{url}/predict", json={"texts": ["good"] * 300}, headers=key, timeout=60)
        unkeyed = httpx.post(f"{url}/predict", json={"texts": ["good"]}, timeout=60)
    finally:
        serve.shutdown()
    clf = Classifier.from_pretrained(tiny_trained, dtype="fp32")
    with TestClient(create_app(tiny_trained, config, classifier=clf)) as local:
        expected = local.post("/predict", json={"texts": TEXTS, "probs": True}, headers={"X-API-Key": "k"}).json()
    assert all(a.status_code == 200 and a.json() == expected for a in answers)
    assert (refused.status_code, unkeyed.status_code) == (413, 401)
