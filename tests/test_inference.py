from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from transformers import pipeline

import bertfit
from bertfit.errors import DataError


@pytest.fixture(scope="module")
def clf(tiny_trained):
    return bertfit.Classifier.from_pretrained(tiny_trained, dtype="fp32")


def test_batched_equals_one_at_a_time_and_order_is_kept(clf, sentiment_data):
    texts = sentiment_data[1].text.tolist()[:30]
    batched = clf.predict_proba(texts, batch_size=7)
    single = np.vstack([clf.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert np.allclose(batched.sum(axis=1), 1.0, atol=1e-5)
    reversed_ = clf.predict_proba(texts[::-1], batch_size=5)
    np.testing.assert_allclose(reversed_[::-1], batched, atol=1e-5)


def test_predict_gives_labels_scores_and_accepts_a_series(clf, sentiment_data):
    val = sentiment_data[1]
    preds = clf.predict(val.text)
    assert len(preds) == len(val)
    assert [p["label"] for p in preds] == val.label.tolist()  # the tiny model learned the toy task
    assert all(0.5 <= p["score"] <= 1.0 for p in preds)


def test_empty_texts_get_a_row_with_no_label(clf):
    preds = clf.predict(["great movie", "", None, "   ", "awful film"])
    assert [p["label"] for p in preds] == ["positive", None, None, None, "negative"]
    assert np.isnan(preds[1]["score"])
    assert np.isnan(clf.predict_proba(["", "good"])[0]).all()


def test_a_bare_string_is_a_clear_error(clf):
    with pytest.raises(DataError, match="wrap a single text in a list"):
        clf.predict("great movie")


def test_bf16_agrees_with_fp32(tiny_trained, clf, sentiment_data):
    texts = sentiment_data[1].text.tolist()
    fast = bertfit.Classifier.from_pretrained(tiny_trained, dtype="bf16")
    agree = np.mean(fast.predict_proba(texts).argmax(1) == clf.predict_proba(texts).argmax(1))
    assert agree >= 0.95


def test_transformers_pipeline_loads_the_folder_and_agrees(tiny_trained, clf, sentiment_data):
    texts = sentiment_data[1].text.tolist()
    pipe = pipeline("text-classification", model=str(tiny_trained), device="cpu")
    theirs = pipe(texts, batch_size=16)
    ours = clf.predict(texts)
    assert [t["label"] for t in theirs] == [o["label"] for o in ours]
    # The pipeline gives the plain softmax; bertfit's scores are calibrated unless told otherwise.
    plain = bertfit.Classifier.from_pretrained(tiny_trained, dtype="fp32", calibration=False).predict(texts)
    np.testing.assert_allclose([t["score"] for t in theirs], [o["score"] for o in plain], atol=1e-4)


def test_predict_file_keeps_columns_rows_and_order(tiny_trained, tmp_path, sentiment_data):
    df = sentiment_data[1].head(25).assign(row_id=range(25), extra=[1.5] * 25)
    df.loc[3, "text"] = ""
    df.to_parquet(tmp_path / "in.parquet")
    summary = bertfit.predict_file(tiny_trained, tmp_path / "in.parquet", tmp_path / "out.jsonl", probs=True)
    out = pd.read_json(tmp_path / "out.jsonl", lines=True)
    assert summary["rows"] == 25 and summary["empty_text"] == 1
    assert out.row_id.tolist() == list(range(25)) and out.text.tolist()[4:] == df.text.tolist()[4:]
    assert list(out.columns) == [*df.columns, "pred_label", "pred_score", "prob_negative", "prob_positive"]
    assert out.pred_label.isna().tolist() == [i == 3 for i in range(25)]
    probs = out[["prob_negative", "prob_positive"]].drop(index=3).to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out.pred_score.drop(index=3), probs.max(axis=1), atol=1e-6)
