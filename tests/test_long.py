"""Texts longer than max_length: truncate, head-tail, and overlapping sliding windows aggregated per document."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import long_text
from transformers import AutoTokenizer

import bertfit
from bertfit.config import DataConfig
from bertfit.data.cache import split_rows, tokenize_labelled
from bertfit.errors import ConfigError
from bertfit.prediction.classifier import Classifier
from bertfit.tokenization import WindowEncoder, aggregate_windows


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_head_tail_keeps_the_first_quarter_and_the_last_three_quarters(tokenizer):
    text = long_text(200)
    full = tokenizer(text)["input_ids"]
    encoded = WindowEncoder(tokenizer, 32, "head-tail")([text, "great"])
    ids = encoded.ids[0]
    assert len(ids) == 32 and encoded.truncated == 1 and encoded.ids[1] == tokenizer("great")["input_ids"]
    assert ids[:8] == full[:8] and ids[8:] == full[-24:]  # [CLS] + 7 head tokens, 23 tail tokens + [SEP]


def test_sliding_windows_cover_every_token_and_overlap_by_the_stride(tokenizer):
    text = long_text(100)
    content = tokenizer(text, add_special_tokens=False)["input_ids"]
    encoded = WindowEncoder(tokenizer, 32, "sliding", stride=8)([text, "good", long_text(40, 1)])
    assert encoded.docs.tolist()[:6] == [0, 0, 0, 0, 0, 1] and encoded.n_texts == 3 and encoded.truncated == 2
    windows = [ids[1:-1] for ids, d in zip(encoded.ids, encoded.docs) if d == 0]
    assert all(len(ids) <= 32 for ids in encoded.ids) and len(windows) == 5  # 30 new tokens, then 22 per window
    for before, after in zip(windows, windows[1:]):
        assert before[-8:] == after[:8]
    rebuilt = windows[0] + [t for w in windows[1:] for t in w[8:]]
    assert rebuilt == content


def test_aggregate_windows_takes_the_mean_or_max_per_document():
    logits = np.array([[1.0, 0.0], [3.0, -2.0], [0.5, 0.5]])
    docs = np.array([0, 0, 1])
    assert aggregate_windows(logits, docs, 2, "mean").tolist() == [[2.0, -1.0], [0.5, 0.5]]
    assert aggregate_windows(logits, docs, 2, "max").tolist() == [[3.0, 0.0], [0.5, 0.5]]


def test_window_settings_are_checked():
    with pytest.raises(ConfigError, match="long must be one of truncate, head-tail, sliding"):
        DataConfig(long="middle").validate()
    with pytest.raises(ConfigError, match=r"stride .* must be 0 to max_length / 2 = 64"):
        DataConfig(long="sliding", stride=100).validate()
    with pytest.raises(ConfigError, match="aggregate must be one of mean, max"):
        DataConfig(aggregate="median").validate()


def test_sliding_training_rows_are_windows_and_validation_splits_whole_documents(tokenizer):
    frame = pd.DataFrame({"text": [long_text(60 + i, i) for i in range(30)], "label": ["a", "b"] * 15})
    cfg = DataConfig(long="sliding", stride=4, max_length=16)
    data, _ = tokenize_labelled(frame, cfg, tokenizer, 16)
    assert data.n_docs == 30 and len(data) > 30 and data.truncated == 30
    assert (data.labels == np.array([0, 1] * 15)[data.docs]).all()  # every window has its document's label
    train_rows, val_rows = split_rows(data.labels, 0.2, 100, 0, "x", data.docs)
    assert len(train_rows) + len(val_rows) == len(data)
    assert not set(data.docs[train_rows]) & set(data.docs[val_rows])
    assert len(set(data.docs[val_rows])) == 6


def test_a_sliding_model_stores_its_window_settings(sliding_model):
    meta = json.loads((sliding_model.model_dir / "bertfit.json").read_text())
    assert meta["data"]["long"] == "sliding" and meta["data"]["stride"] == 2 and meta["data"]["aggregate"] == "mean"
    assert meta["train_rows"] > 320  # windows
    assert sliding_model.metrics["n"] == 80  # validation is scored per document
    clf = Classifier.from_pretrained(sliding_model.model_dir)
    assert (clf.long, clf.stride, clf.max_length) == ("sliding", 2, 8)


def test_predict_on_long_texts_keeps_one_row_per_input_row(sliding_model, tmp_path):
    texts = [long_text(80, i) + " great" for i in range(7)] + ["", "awful", long_text(200)]
    pd.DataFrame({"id": range(10), "text": texts}).to_csv(tmp_path / "in.csv", index=False)
    summary = bertfit.predict_file(sliding_model.model_dir, tmp_path / "in.csv", tmp_path / "o.csv", window=4)
    out = pd.read_csv(tmp_path / "o.csv")
    assert out["id"].tolist() == list(range(10)) and out["pred_label"].isna().tolist() == [False] * 7 + [
        True,
        False,
        False,
    ]
    assert summary["rows"] == 10 and summary["empty_text"] == 1
    clf = Classifier.from_pretrained(sliding_model.model_dir, dtype="fp32")
    batched = clf.predict_proba(texts)
    single = np.concatenate([clf.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    mean_rows = Classifier.from_pretrained(sliding_model.model_dir, dtype="fp32", aggregate="max").predict_proba(texts)
    assert not np.allclose(np.nan_to_num(mean_rows), np.nan_to_num(batched))
