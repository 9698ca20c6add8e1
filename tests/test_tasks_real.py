"""The real default model on the three task shapes: label sets (GoEmotions), sentence pairs, long documents."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA
from transformers import pipeline

import bertfit
from bertfit.prediction.classifier import Classifier

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (SHARED_DATA / "goemotions").is_dir(), reason="needs ../shared/data/goemotions"),
]


@pytest.fixture(scope="module")
def goemotions_model(tmp_path_factory):
    """all-MiniLM-L6-v2 trained on 8,000 GoEmotions rows (the list column `labels`), validated on 1,500."""
    folder = SHARED_DATA / "goemotions"
    train = pd.read_parquet(folder / "train.parquet").sample(8000, random_state=0)[["text", "labels"]]
    val = pd.read_parquet(folder / "validation.parquet").sample(1500, random_state=0)[["text", "labels"]]
    out = tmp_path_factory.mktemp("goemotions") / "model"
    return bertfit.train(train, out, validation=val, label_col="labels", max_length=64, progress=False)


def test_goemotions_subset_reaches_its_floor_and_the_pipeline_loads_it(goemotions_model, tmp_path):
    test = pd.read_parquet(SHARED_DATA / "goemotions" / "test.parquet").head(2000)
    test[["text", "label"]].to_csv(tmp_path / "test.csv", index=False)  # comma-joined names, as in the data
    report = bertfit.evaluate(goemotions_model.model_dir, tmp_path / "test.csv", label_col="label")
    print("goemotions subset:", {k: report[k] for k in ("micro_f1", "macro_f1", "samples_f1")})
    assert report["n"] == 2000 and report["micro_f1"] >= FLOOR_MICRO and report["macro_f1"] >= FLOOR_MACRO, report
    flat = bertfit.evaluate(goemotions_model.model_dir, tmp_path / "test.csv", label_col="label", threshold=0.5)
    assert report["macro_f1"] > flat["macro_f1"]  # tuned per-label thresholds pay off on rare labels
    pipe = pipeline("text-classification", model=str(goemotions_model.model_dir), top_k=None, device="cpu")
    texts = test["text"].head(8).tolist()
    ours = Classifier.from_pretrained(goemotions_model.model_dir, dtype="fp32").predict_proba(texts)
    names = goemotions_model.labels
    theirs = np.array([[{d["label"]: d["score"] for d in row}[n] for n in names] for row in pipe(texts)])
    np.testing.assert_allclose(theirs, ours, atol=1e-4)


# Measured 0.533 micro / 0.383 macro on 2026-11-22 (2 Xeon cores, bf16); the full data reaches 0.595 / 0.473.
FLOOR_MICRO, FLOOR_MACRO = 0.50, 0.34


def pair_rows(n: int, seed: int) -> pd.DataFrame:
    """Does the second sentence name the same colour as the first? Neither sentence alone says."""
    rng = random.Random(seed)
    colours = ["red", "blue", "green", "yellow", "black", "white", "purple", "orange"]
    things = ["car", "house", "door", "shirt", "ball", "cup", "bike", "chair", "hat", "boat"]
    rows = []
    for i in range(n):
        thing, colour = rng.choice(things), rng.choice(colours)
        same = i % 2 == 0
        other = colour if same else rng.choice([c for c in colours if c != colour])
        rows.append({"first": f"the {thing} is {colour}", "second": f"my {thing} looks {other} today",
                     "label": "same" if same else "different"})  # fmt: skip
    return pd.DataFrame(rows)


def test_a_pair_task_that_needs_both_texts_is_learned(tmp_path):
    train, test = pair_rows(1200, 0), pair_rows(300, 1)
    result = bertfit.train(train, tmp_path / "m", text_cols=["first"], pair_col="second", max_length=32,
                           epochs=3, progress=False)  # fmt: skip
    scored = bertfit.evaluate(result.model_dir, test)
    print("pairs:", scored["accuracy"])
    assert scored["accuracy"] >= 0.9, scored["accuracy"]


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


@pytest.fixture(scope="module")
def long_model(tmp_path_factory):
    rng = random.Random(0)
    docs = [long_review(i, i % 2 == 0, rng) for i in range(96)]
    frame = pd.DataFrame({"text": docs, "label": ["positive" if i % 2 == 0 else "negative" for i in range(96)]})
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

    assert accuracy() >= 0.95  # sliding windows, as trained
    assert accuracy(long="head-tail") >= 0.95  # the last 95 of 126 tokens hold the verdict
    assert accuracy(long="truncate") <= 0.7  # the verdict is cut off, at 128 tokens
    assert accuracy(long="truncate", max_length=512) <= 0.7  # and at 512
    pd.DataFrame({"text": docs}).to_parquet(tmp_path / "docs.parquet")
    summary = bertfit.predict_file(long_model.model_dir, tmp_path / "docs.parquet", tmp_path / "out.parquet")
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert len(out) == summary["rows"] == 40 and out["text"].tolist() == docs
    assert ((out["pred_label"] == "positive").to_numpy() == truth).mean() >= 0.95
