"""`bertfit serve`: the API answers what `Classifier.predict` answers (single-label, multi-label, pairs, sliding
windows), requests from many connections share batches and each gets its own rows back in order, every limit and
fault has its status code, and a served process drains its requests on SIGTERM, then exits 0."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="serving needs: pip install 'bertfit[serve]'")
import httpx  # noqa: E402
from conftest import long_text  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bertfit.prediction.classifier import Classifier  # noqa: E402
from bertfit.serving import ServeConfig, create_app  # noqa: E402
from bertfit.serving.batcher import Batcher, Job, QueueFull  # noqa: E402

TEXTS = ["a great film", "", "the plot was awful and boring", None, "i love it, very nice", "   ", "sad ugly story"]


def classifier(model_dir: Path) -> Classifier:
    return Classifier.from_pretrained(model_dir, dtype="fp32")


def as_json(records: list[dict]) -> list[dict]:
    """`Classifier.predict`'s records as JSON carries them (NaN scores are null)."""
    return json.loads(json.dumps(records).replace("NaN", "null"))


def serve_app(model_dir: Path, process: bool = True, **settings) -> TestClient:
    """The app as `bertfit serve` builds it: the model loaded from its folder, its forward passes in a model process
    (ServeConfig.model_process). `process=False` hands create_app a Classifier, which stays in this process (the
    tests of batching and limits, which need no forward pass of their own: a model process starts in ~3 s)."""
    config = ServeConfig(dtype="fp32", **settings)
    return TestClient(create_app(model_dir, config, classifier=None if process else classifier(model_dir)))


def metric(client: TestClient, name: str, **labels: str) -> float:
    """One sample's value from /metrics (0 when absent)."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


# -- the API's answers are Classifier.predict's ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def single(tiny_trained: Path):
    with serve_app(tiny_trained) as client:
        yield client, classifier(tiny_trained)


def test_single_label_equals_predict_bit_for_bit_with_null_rows_for_empty_texts(single) -> None:
    client, clf = single
    answer = client.post("/predict", json={"texts": TEXTS})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["predictions"] == as_json(clf.predict(TEXTS))  # a request alone in its batch: the same batches
    assert [p["label"] is None for p in body["predictions"]] == [False, True, False, True, False, True, False]
    assert body["model"] == {"id": tiny_trained_name(clf), "version": clf.meta["created"]}


def tiny_trained_name(clf: Classifier) -> str:
    return clf.model_dir.name


def test_probs_give_every_labels_calibrated_score(single) -> None:
    client, clf = single
    body = client.post("/predict", json={"texts": TEXTS, "probs": True}).json()
    proba = clf.predict_proba(TEXTS)
    for row, values in zip(body["predictions"], proba):
        expected = {name: None if math.isnan(v) else float(v) for name, v in zip(clf.labels, values)}
        assert row["probs"] == expected


def test_multi_label_equals_predict_with_the_stored_thresholds(multi_model) -> None:
    clf = classifier(multi_model.model_dir)
    stored = json.loads((multi_model.model_dir / "bertfit.json").read_text())["thresholds"]["values"]
    texts = ["good film", "awful but great", "the movie was", "", "sad bad story", "i love it and hate it"]
    with serve_app(multi_model.model_dir) as client:
        body = client.post("/predict", json={"texts": texts}).json()
        info = client.get("/info").json()
    assert body["predictions"] == as_json(clf.predict(texts))
    assert info["thresholds"] == {name: stored.get(name, 0.5) for name in clf.labels}
    assert body["predictions"][3] == {"labels": None, "scores": None}


def test_pairs_equal_predict_and_single_texts_are_refused(pair_model: Path) -> None:
    clf = classifier(pair_model)
    pairs = [("a great film", "very nice story"), ("great fun", "awful plot"), ("", "good"), ("sad", "bad")]
    with serve_app(pair_model) as client:
        body = client.post("/predict", json={"texts": [list(p) for p in pairs]}).json()
        refused = client.post("/predict", json={"texts": ["a great film"]})
    assert body["predictions"] == as_json(clf.predict(pairs))
    assert body["predictions"][2]["label"] is None
    assert refused.status_code == 422 and "pairs" in refused.json()["detail"]


def test_sliding_windows_equal_predict(sliding_model) -> None:
    clf = classifier(sliding_model.model_dir)
    texts = [long_text(40) + " great", "bad " + long_text(25, 2), "good", long_text(60, 1) + " awful"]
    with serve_app(sliding_model.model_dir) as client:
        body = client.post("/predict", json={"texts": texts}).json()
    assert clf.long == "sliding" and len(clf.scorer.encode_present(texts).lengths) > len(texts)
    assert body["predictions"] == as_json(clf.predict(texts))


def test_explain_equals_classifier_explain(single) -> None:
    pytest.importorskip("captum")
    client, clf = single
    texts = ["a great film", None, "awful and boring"]
    body = client.post("/explain", json={"texts": texts, "steps": 8}).json()
    expected = [e.to_dict() for e in clf.explain(["a great film", "awful and boring"], n_steps=8)]
    got = [e for e in body["explanations"] if e is not None]
    assert body["explanations"][1] is None and len(got) == 2
    for g, e in zip(got, expected):
        assert (g["label"], g["words"], g["spans"]) == (e["label"], e["words"], e["spans"])
        np.testing.assert_allclose(g["attributions"], e["attributions"], rtol=1e-5, atol=1e-6)


def test_a_model_process_that_dies_fails_its_requests_with_500_and_says_why(tiny_trained: Path, caplog) -> None:
    with TestClient(create_app(tiny_trained, ServeConfig(dtype="fp32")), raise_server_exceptions=False) as client:
        service = client.app.state.service
        assert client.get("/info").json()["serving"]["model_process"] is True
        service.model_process.process.kill()
        service.model_process.process.join(10)
        answer = client.post("/predict", json={"texts": ["good"]})
        assert answer.status_code == 500
    assert "the model process exited (exit code -9)" in caplog.text


def test_health_info_and_docs(single) -> None:
    client, clf = single
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["labels"] == clf.labels and info["temperature"] == clf.temperature
    assert info["serving"]["max_batch_tokens"] == clf.default_batch_tokens() and "api_key" not in info["serving"]
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_the_warm_up_scores_the_models_validation_sample_before_the_first_request(tiny_trained: Path, monkeypatch):
    """So that --dtype auto is measured on batch-sized rows of the model's own data, not on one short text."""
    from bertfit.data.sample import read_validation_sample
    from bertfit.prediction.scorer import Scorer

    sample, _ = read_validation_sample(tiny_trained)
    seen: list[list[list[int]]] = []
    real = Scorer.logits
    monkeypatch.setattr(Scorer, "logits", lambda self, encoded, *a: seen.append(encoded.ids) or real(self, encoded, *a))
    with TestClient(create_app(tiny_trained, ServeConfig(dtype="fp32"), classifier=classifier(tiny_trained))):
        pass
    n = min(128, len(sample.ids))
    assert n > 1 and seen[0] == sample.ids[:n]  # first: the sample's rows, as training tokenized them
    assert len(seen) == 2 and len(seen[1]) == 1  # then the one-text request through the model thread
    seen.clear()
    with serve_app(tiny_trained):  # with a model process, this process scores the sample (for dtype auto) only
        pass
    assert seen == [sample.ids[:n]]


def test_an_exported_folder_is_served_and_explained_on_the_weights_kept_beside_it(tiny_trained: Path, tmp_path):
    """The fast path on a CPU: serve an OpenVINO export; /explain runs on the torch weights the export keeps, and
    answers 422 (not 500) for an export without them."""
    pytest.importorskip("openvino")
    pytest.importorskip("captum")
    import bertfit

    out = tmp_path / "ov"
    bertfit.export(tiny_trained, out, "openvino")
    clf = Classifier.from_pretrained(out)
    assert clf.engine == "openvino"
    with TestClient(create_app(out, ServeConfig())) as client:
        assert client.post("/predict", json={"texts": TEXTS}).json()["predictions"] == as_json(clf.predict(TEXTS))
        explained = client.post("/explain", json={"texts": ["a great film"]})
        assert explained.status_code == 200, explained.text
        expected = Classifier.from_pretrained(tiny_trained, dtype="fp32").explain(["a great film"])[0].to_dict()
        assert explained.json()["explanations"][0]["words"] == expected["words"]
        (out / "model.safetensors").unlink()  # the explainer is built on the first /explain: now it has no weights
    with TestClient(create_app(out, ServeConfig())) as client:
        refused = client.post("/explain", json={"texts": ["a great film"]})
        assert refused.status_code == 422 and "model.safetensors" in refused.json()["detail"], refused.text


# -- batching across connections ------------------------------------------------------------------------------------


def test_concurrent_requests_share_batches_and_each_gets_its_own_rows_in_order(tiny_trained: Path) -> None:
    clf = classifier(tiny_trained)
    words = ["good", "bad", "movie", "the plot", "really awful", "great fun", "very", "i love"]
    requests = [[" ".join(words[(i + j) % len(words)] for j in range(1 + (i + k) % 5)) for k in range(1 + i % 4)]
                for i in range(12)]  # fmt: skip
    app = create_app(tiny_trained, ServeConfig(max_wait_ms=300), classifier=clf)

    async def send_all() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
                return await asyncio.gather(*(client.post("/predict", json={"texts": t}) for t in requests))

    answers = asyncio.run(send_all())
    for texts, answer in zip(requests, answers):
        got, expected = answer.json()["predictions"], clf.predict(texts)
        assert [p["label"] for p in got] == [p["label"] for p in expected]
        np.testing.assert_allclose([p["score"] for p in got], [p["score"] for p in expected], rtol=1e-5)
    client = TestClient(app)  # the metrics of the run above (no lifespan: the model thread has stopped)
    batches = metric(client, "bertfit_batch_requests_count")
    scored = metric(client, "bertfit_batch_requests_sum")
    rows = metric(client, "bertfit_rows_total")
    assert scored >= len(requests) and batches < len(requests) / 2  # 12 requests in a few batches (+ warm-ups)
    assert rows == sum(len(t) for t in requests)


def test_a_batch_of_requests_is_cut_at_the_least_cost_and_keeps_each_rows_logits(tiny_trained: Path) -> None:
    from bertfit.serving.batcher import _group_cuts

    # passes are padded to a multiple of 8 tokens. One long row and seven short: 64 + 8 x 104 tokens in one pass,
    # (64 + 104) + (64 + 7 x 16) in two
    assert _group_cuts(np.array([100, 10, 10, 10, 10, 10, 10, 10]), 4096, 64) == [1]
    assert _group_cuts(np.array([12, 11, 10, 9]), 4096, 64) == []  # a second pass costs more than its padding
    # free passes: a cut wherever the padded length (40, 32, 24, 24, 16, 16, 8, 8) changes
    assert _group_cuts(np.array([40, 30, 21, 20, 12, 10, 5, 2]), 4096, 0) == [1, 2, 4, 6]
    assert _group_cuts(np.array([50, 50, 50, 50]), 112, 64) == [2]  # the token budget holds: 2 x 56 padded tokens
    assert _group_cuts(np.array([500, 5]), 100, 64) == [1]  # a row over the budget goes alone
    clf = classifier(tiny_trained)
    texts = ["good", "the movie was really very good and the story was great fun", "bad film", "i hate it"]
    encoded = clf.scorer.encode_present(texts)
    batcher = Batcher(clf.scorer, clf.decoder, 4096, 0.0, 8, pass_cost=8)
    logits, padded = batcher._logits(encoded)
    np.testing.assert_allclose(logits, clf.scorer.logits(encoded, 4096, None), atol=1e-5)
    # /metrics' padded tokens are those of the passes run: the long row alone, the three short ones together
    longest = sorted(encoded.lengths.tolist(), reverse=True)
    assert padded == 8 * -(-longest[0] // 8) + 3 * 8 * -(-longest[1] // 8) < 4 * 8 * -(-longest[0] // 8)


def test_the_model_process_runs_a_batchs_passes_in_lanes_with_the_logits_of_one_thread(tiny_trained: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from bertfit.serving.batcher import _group_cuts, grouped_logits, lane_shares
    from bertfit.serving.worker import ModelProcess

    clf = classifier(tiny_trained)
    texts = [long_text(n, seed) for seed, n in enumerate([3, 40, 5, 22, 9, 31, 2, 14])]
    encoded = clf.scorer.encode_present(texts)
    order = np.argsort(-encoded.lengths, kind="stable")
    groups = np.split(order, _group_cuts(encoded.lengths[order], 4096, 8))
    assert len(groups) >= 3
    alone = grouped_logits(clf.scorer, encoded, groups, 4096)  # each pass padded to a multiple of 8 tokens
    np.testing.assert_allclose(alone, clf.scorer.logits(encoded, 4096, None), atol=1e-5)
    padded = clf.scorer.encoder.pad(encoded.ids[:2], encoded.lengths[:2], None, 8)
    assert padded["input_ids"].shape[1] == 8 * -(-int(encoded.lengths[:2].max()) // 8)
    assert padded["attention_mask"].sum(axis=1).tolist() == encoded.lengths[:2].tolist()
    shares = lane_shares(groups, 2)
    dealt = [np.concatenate(share) for share in shares]
    assert sorted(np.concatenate(dealt).tolist()) == list(range(len(texts)))  # every row once
    assert [len(rows) for rows in dealt] == [4, 4]  # and half of them to each lane
    for group in groups:  # each lane has half of every pass of two rows or more
        halves = [part for share in shares for part in share if set(part) <= set(group)]
        assert len(halves) == min(2, len(group)) and abs(len(halves[0]) - len(halves[-1])) <= 1
    assert lane_shares(groups, 1) is None and lane_shares([order[:1]], 2) is None
    with ThreadPoolExecutor(2) as lanes:
        np.testing.assert_allclose(grouped_logits(clf.scorer, encoded, groups, 4096, lanes, shares), alone, atol=1e-5)
    process = ModelProcess(str(tiny_trained), clf.scorer.width, {"dtype": "fp32", "engine": "torch"}, 2)
    try:
        np.testing.assert_allclose(process.grouped_logits(encoded, groups, 4096), alone, atol=1e-5)
        lone = process.logits(encoded, 4096, None)
        np.testing.assert_allclose(lone, clf.scorer.logits(encoded, 4096, None), atol=1e-6)
    finally:
        process.close()
    assert process.process.exitcode == 0


def test_a_full_queue_refuses_with_queue_full_and_the_server_answers_503(tiny_trained: Path) -> None:
    clf = classifier(tiny_trained)
    batcher = Batcher(clf.scorer, clf.decoder, 4096, 0.0, max_queue=2)  # never started: nothing leaves the queue
    for _ in range(2):
        batcher.submit(Job(["good"], clf.scorer.encode_present(["good"]), lambda proba, error: None))
    with pytest.raises(QueueFull):
        batcher.submit(Job(["bad"], clf.scorer.encode_present(["bad"]), lambda proba, error: None))
    with serve_app(tiny_trained, process=False) as client:
        client.app.state.service.batcher.max_queue = 0
        answer = client.post("/predict", json={"texts": ["good"]})
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"


# -- limits and faults ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict(tiny_trained: Path):
    with serve_app(tiny_trained, process=False, max_texts_per_request=3, max_chars=40, api_key="s3cret") as client:
        yield client


KEY = {"Authorization": "Bearer s3cret"}


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ({"texts": ["good"] * 4}, 413, "the limit is 3"),
        ({"texts": ["good " * 9]}, 413, "the limit is 40"),
        ({"texts": [1, 2]}, 422, "texts"),
        ({"texts": "good"}, 422, "texts"),
        ({"text": ["good"]}, 422, "texts"),
        ({"texts": [["good", "bad"]]}, 422, "single texts"),
    ],
)
def test_limits_and_wrong_types_have_their_status(strict, body, status, fragment) -> None:
    answer = strict.post("/predict", json=body, headers=KEY)
    assert answer.status_code == status, answer.text
    assert fragment in json.dumps(answer.json()["detail"])


def test_malformed_json_and_an_oversized_body(strict) -> None:
    bad = strict.post("/predict", content=b'{"texts": ["good"', headers={**KEY, "Content-Type": "application/json"})
    assert bad.status_code == 422
    huge = strict.post("/predict", content=b"x" * 2_000_000, headers={**KEY, "Content-Type": "application/json"})
    assert huge.status_code == 413 and "bytes" in huge.json()["detail"]


def test_the_api_key_is_required_when_set(strict) -> None:
    assert strict.post("/predict", json={"texts": ["good"]}).status_code == 401
    assert strict.post("/predict", json={"texts": ["good"]}, headers={"X-API-Key": "wrong"}).status_code == 401
    assert strict.post("/predict", json={"texts": ["good"]}, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert strict.post("/predict", json={"texts": ["good"]}, headers=KEY).status_code == 200
    assert strict.get("/info").status_code == 401
    assert strict.get("/health").status_code == 200  # for load balancers
    assert metric(strict, "bertfit_requests_total", endpoint="/predict", status="401") >= 2


def test_no_request_reads_or_writes_a_file(single, tmp_path: Path) -> None:
    client, clf = single
    secret = tmp_path / "secret.csv"
    secret.write_text("text\ngreat\n")
    body = client.post("/predict", json={"texts": [str(secret), "/etc/passwd"]}).json()
    assert body["predictions"] == as_json(clf.predict([str(secret), "/etc/passwd"]))  # paths are only texts
    upload = client.post(f"/files?name={secret}&text_col=text", content=b"text\nawful\n")
    job = upload.json()
    files = client.app.state.files
    assert upload.status_code == 202 and files.get(job["id"]).folder.parent == files.root
    assert job["name"] == "secret.labelled.csv" and secret.read_text() == "text\ngreat\n"
    assert client.get("/files/..%2F..%2Fetc/download").status_code == 404
    assert client.post("/files?name=x.exe", content=b"x").status_code == 422


def test_an_uploaded_file_comes_back_labelled(single, tmp_path: Path) -> None:
    client, clf = single
    csv = "id,text\n1,a great film\n2,\n3,awful and sad\n"
    job = client.post("/files?name=reviews.csv", content=csv.encode()).json()
    for _ in range(200):
        job = client.get(f"/files/{job['id']}").json()
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    assert job["status"] == "done" and job["rows"] == 3, job
    download = client.get(job["download"])
    assert download.status_code == 200 and "reviews.labelled.csv" in download.headers["content-disposition"]
    (tmp_path / "in.csv").write_text(csv)
    clf.predict_file(tmp_path / "in.csv", tmp_path / "out.csv")
    assert download.text == (tmp_path / "out.csv").read_text()


def test_the_page_is_self_contained_and_escapes_label_names(single) -> None:
    client, _ = single
    page = client.get("/").text
    assert "<script src" not in page and "http://" not in page and "https://" not in page
    assert 'id="texts"' in page and 'id="file"' in page


# -- the command ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["{tmp}/nope"], "model folder not found"),
        (["{model}", "--max-queue", "0"], "max_queue must be at least 1"),
        (["{model}", "--dtype", "fp8"], "dtype must be one of"),
    ],
)
def test_cli_errors_are_one_line(tiny_trained: Path, tmp_path: Path, args, fragment, restore_cli_state) -> None:
    from typer.testing import CliRunner

    from bertfit.cli import app

    result = CliRunner().invoke(app, ["serve", *[a.format(tmp=tmp_path, model=tiny_trained) for a in args]])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.output


def test_cli_without_the_extra_names_it(tiny_trained: Path, monkeypatch, restore_cli_state) -> None:
    from typer.testing import CliRunner

    import bertfit.serving
    from bertfit.cli import app

    monkeypatch.setattr(bertfit.serving, "find_spec", lambda name: None if name == "uvicorn" else True)
    result = CliRunner().invoke(app, ["serve", str(tiny_trained)])
    assert result.exit_code == 2 and "pip install 'bertfit[serve]'" in result.stderr
    help_text = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "250"}).stdout
    for option in ("--max-batch-tokens", "--max-wait-ms", "--max-queue", "--api-key", "--workers-threads"):
        assert option in help_text


# -- a served process: disconnects and SIGTERM ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not become healthy")


def wait_for_queue(url: str, depth: int) -> None:
    """Until `depth` requests wait for the model (the served process has them; none is in flight on the wire)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=5).text):
            if family.name == "bertfit_queue_depth" and family.samples[0].value >= depth:
                return
        time.sleep(0.02)
    raise AssertionError(f"{depth} requests never waited for the model")


def test_served_process_skips_a_gone_client_and_drains_on_sigterm(tiny_trained: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "bertfit", "serve", str(tiny_trained), "--port", str(port), "--max-wait-ms", "1500",
            "--dtype", "fp32"]  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        process = subprocess.Popen(args, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, process, log)
        gone = json.dumps({"texts": ["good", "bad", "great"]}).encode()
        with socket.create_connection(("127.0.0.1", port)) as raw:  # a client that leaves before its answer
            raw.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(gone), gone))  # fmt: skip
            wait_for_queue(url, 1)
        answers: dict[str, httpx.Response] = {}

        def ask(name: str, texts: list[str]) -> None:
            answers[name] = httpx.post(f"{url}/predict", json={"texts": texts}, timeout=30)

        ask("after", ["a great film", "awful"])  # waits out the 1.5 s window that the gone client opened
        counts = {s.name: s.value for f in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
                  for s in f.samples if not s.labels}  # fmt: skip
        in_flight = threading.Thread(target=ask, args=("drained", ["i love it"]))
        in_flight.start()
        wait_for_queue(url, 1)  # the request waits in the batcher's 1.5 s window ...
        process.send_signal(signal.SIGTERM)  # ... when the server is told to stop
        in_flight.join(30)
        code = process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    clf = classifier(tiny_trained)
    assert answers["drained"].status_code == 200 and answers["drained"].json()["predictions"] == as_json(
        clf.predict(["i love it"])
    )
    assert answers["after"].json()["predictions"] == as_json(clf.predict(["a great film", "awful"]))
    assert code == 0, log.read_text()
    assert counts["bertfit_disconnected_total"] == 1
    assert counts["bertfit_batch_rows_sum"] == 1 + 2  # the warm-up and the 2 texts after: not the gone client's 3
