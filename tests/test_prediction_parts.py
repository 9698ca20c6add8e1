"""The Classifier is a facade over a Scorer (logits) and a Decoder (labels): its attributes read and set theirs,
and the parts alone give the Classifier's results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bertfit.prediction.classifier import Classifier
from bertfit.prediction.loading import build_parts, load_weights
from bertfit.prediction.stream import score_window

TEXTS = ["the movie was great and fun", "", "a terrible , boring plot", "so sad"]


@pytest.fixture(scope="module")
def clf(tiny_trained: Path) -> Classifier:
    return Classifier.from_pretrained(tiny_trained, dtype="fp32")


def test_the_facade_reads_and_sets_its_parts(clf: Classifier) -> None:
    assert clf.model is clf.scorer.model and clf.encoder is clf.scorer.encoder
    assert (clf.dtype, clf.max_length, clf.long) == (clf.scorer.dtype, clf.scorer.max_length, clf.scorer.long)
    assert clf.schema is clf.decoder.schema and clf.labels == clf.decoder.labels
    before = clf.predict_proba(TEXTS)
    saved = clf.temperature
    try:
        clf.temperature = saved * 4
        assert clf.decoder.temperature == saved * 4
        flatter = clf.predict_proba(TEXTS)
    finally:
        clf.temperature = saved
    scored = ~np.isnan(before[:, 0])
    assert np.isnan(flatter[1]).all() and (flatter[scored].max(1) < before[scored].max(1)).all()
    calls = []
    forward = clf.forward
    clf.forward = lambda **batch: calls.append(batch) or forward(**batch)
    try:
        np.testing.assert_allclose(clf.predict_proba(TEXTS), before, rtol=1e-6)
    finally:
        clf.forward = forward
    assert calls and clf.scorer.forward is forward


def test_the_parts_alone_score_as_the_classifier_does(clf: Classifier, tiny_trained: Path) -> None:
    model, tokenizer, meta, device, dtype = load_weights(tiny_trained, "cpu", "fp32")
    scorer, decoder = build_parts(model, tokenizer, meta, device, dtype)
    texts = [t or None for t in TEXTS]
    proba = score_window(scorer, decoder, texts, scorer.encode_present(texts), 4096, None)
    np.testing.assert_allclose(proba, clf.predict_proba(TEXTS), rtol=1e-5, atol=1e-6)
    expected = [{**r, "score": pytest.approx(r["score"], nan_ok=True)} for r in clf.predict(TEXTS)]
    assert decoder.records(proba) == expected
    frame = decoder.with_predictions(pd.DataFrame({"text": TEXTS}), proba, True, "input")
    assert list(frame.columns) == ["text", "pred_label", "pred_score", *(f"prob_{n}" for n in clf.labels)]
