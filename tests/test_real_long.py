"""The real default model on long documents whose deciding words come after token 512."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

import bertfit
from bertfit.prediction.classifier import Classifier

pytestmark = pytest.mark.slow

FILL = (
    "The staff greeted us at the door and we were shown to a table near the window. The menu lists soups, "
    "salads, grilled fish and a few pasta dishes, with a separate page for drinks and desserts. We ordered "
    "two starters and two mains and waited while the room filled up with families and groups of friends."
)


def long_review(i: int, positive: bool, rng: random.Random) -> str:
    """About 600 tokens of neutral description; the verdict comes last, beyond token 512."""
    sentences = FILL.split(". ")
    parts = [f"Visit number {i}."]
    while len(" ".join(parts).split()) < 450:
        rng.shuffle(sentences)
        parts.append(". ".join(sentences) + ".")
    verdict = rng.choice(["Wonderful, we loved it", "Excellent, truly great"] if positive else
                         ["Awful, we hated it", "Terrible, truly bad"])  # fmt: skip
    return " ".join(parts) + f" In the end our verdict: {verdict}."


# 48 documents, 2 epochs: every test document right with seeds 42 and 1 (66 s of training on an
# AVX-512 EPYC, fp32); 32 documents left sliding windows at 0.85; the suite trained on 96 before (133 s).
N_TRAIN = 48


@pytest.fixture(scope="module")
def long_model(tmp_path_factory):
    rng = random.Random(0)
    docs = [long_review(i, i % 2 == 0, rng) for i in range(N_TRAIN)]
    frame = pd.DataFrame({"text": docs, "label": ["positive" if i % 2 == 0 else "negative" for i in range(N_TRAIN)]})
    out = tmp_path_factory.mktemp("long") / "model"
    return bertfit.train(frame, out, long="sliding", max_length=128, stride=16, epochs=2, progress=False)


def test_deciding_words_beyond_token_512_need_sliding_or_head_tail(long_model, tmp_path):
    rng = random.Random(1)
    docs = [long_review(1000 + i, i % 2 == 0, rng) for i in range(40)]
    truth = np.array([i % 2 == 0 for i in range(40)])
    clf = Classifier.from_pretrained(long_model.model_dir, dtype="fp32")
    assert (clf.encoder(docs).docs is not None) and min(len(clf.tokenizer(d)["input_ids"]) for d in docs) > 530

    def accuracy(**kw) -> float:
        model = Classifier.from_pretrained(long_model.model_dir, dtype="fp32", **kw)
        pred = np.array([p["label"] == "positive" for p in model.predict(docs)])
        print("long", kw, float((pred == truth).mean()))
        return float((pred == truth).mean())

    assert accuracy(long="head-tail") >= 0.95  # the last 95 of 126 tokens hold the verdict
    assert accuracy(long="truncate") <= 0.7  # the verdict is cut off, at 128 tokens
    assert accuracy(long="truncate", max_length=512) <= 0.7  # and at 512
    pd.DataFrame({"text": docs}).to_parquet(tmp_path / "docs.parquet")
    summary = bertfit.predict_file(long_model.model_dir, tmp_path / "docs.parquet", tmp_path / "out.parquet",
                                   dtype="fp32")  # fmt: skip
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert len(out) == summary["rows"] == 40 and out["text"].tolist() == docs
    sliding = float(((out["pred_label"] == "positive").to_numpy() == truth).mean())
    print("long (sliding windows, as trained)", sliding)
    assert sliding >= 0.95
