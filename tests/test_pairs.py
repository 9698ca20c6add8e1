"""Sentence pairs: two texts per row, encoded as two segments (token_type_ids), in training and prediction."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import POSITIVE, pair_frame
from transformers import AutoTokenizer, DataCollatorWithPadding
from typer.testing import CliRunner

import bertfit
from bertfit.cli import app
from bertfit.config import DataConfig
from bertfit.data.cache import TokenizedRows, tokenize_labelled
from bertfit.errors import ConfigError, DataError
from bertfit.prediction.classifier import Classifier
from bertfit.tokenization import WindowEncoder


def test_each_text_alone_is_uninformative():
    frame = pair_frame(400)
    has_positive = frame["premise"].map(lambda t: any(w in t.split() for w in POSITIVE))
    assert pd.crosstab(has_positive, frame["label"]).to_numpy().tolist() == [[100, 100], [100, 100]]


def test_pairs_encode_as_two_segments_cutting_the_longer_text_first(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    long_text = " ".join(["movie"] * 40)
    encoded = WindowEncoder(tokenizer, 16)([(long_text, "great fun"), ("great", "bad")])
    ids = encoded.ids[0]
    assert len(ids) == 16 and encoded.truncated == 1
    assert tokenizer.decode(ids[encoded.type_starts[0] :], skip_special_tokens=True) == "great fun"
    batch = WindowEncoder(tokenizer, 16).pad(encoded.ids, encoded.lengths, encoded.type_starts)
    assert batch["token_type_ids"][1].tolist()[:6] == [0, 0, 0, 1, 1, 0]  # [CLS] great [SEP] | bad [SEP] | pad


def test_training_rows_carry_token_type_ids_to_the_collator(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = DataConfig(text_cols=["premise"], pair_col="hypothesis")
    data, schema = tokenize_labelled(pair_frame(8), cfg, tokenizer, 32)
    rows = TokenizedRows(data)
    item = rows[0]
    assert len(item["token_type_ids"]) == len(item["input_ids"]) and item["token_type_ids"][-1] == 1
    batch = DataCollatorWithPadding(tokenizer)([rows[i] for i in range(4)])
    assert batch["token_type_ids"].shape == batch["input_ids"].shape and batch["token_type_ids"].sum() > 0


def test_pair_col_is_checked(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="--pair-col works with --long truncate only"):
        DataConfig(pair_col="b", long="sliding").validate()
    frame = pair_frame(40).drop(columns="hypothesis")
    with pytest.raises(DataError, match="no column 'hypothesis'"):
        bertfit.train(frame, tmp_path / "m", model=str(tiny_model_dir), text_cols=["premise"],
                      pair_col="hypothesis", progress=False)  # fmt: skip


def test_pair_models_store_and_reuse_the_pair_column(pair_model, tmp_path, restore_cli_state):
    meta = json.loads((pair_model / "bertfit.json").read_text())
    assert meta["data"]["text_cols"] == ["premise"] and meta["data"]["pair_col"] == "hypothesis"
    frame = pair_frame(20, seed=3)
    frame.loc[2, "hypothesis"] = " "
    frame.drop(columns="label").to_csv(tmp_path / "in.csv", index=False)
    result = CliRunner().invoke(app, ["predict", str(pair_model), str(tmp_path / "in.csv"), str(tmp_path / "o.csv")])
    assert result.exit_code == 0, result.output
    out = pd.read_csv(tmp_path / "o.csv")
    assert len(out) == 20 and pd.isna(out.loc[2, "pred_label"]) and out["pred_label"].notna().sum() == 19
    frame.drop(columns="hypothesis").to_csv(tmp_path / "no_pair.csv", index=False)
    missing = CliRunner().invoke(
        app, ["predict", str(pair_model), str(tmp_path / "no_pair.csv"), str(tmp_path / "x.csv")]
    )
    assert missing.exit_code == 2 and "no column 'hypothesis'" in missing.output


def test_prediction_feeds_token_type_ids_to_the_model(pair_model):
    clf = Classifier.from_pretrained(pair_model, dtype="fp32")
    seen = []
    forward = clf.forward
    clf.forward = lambda **batch: seen.append(batch) or forward(**batch)
    proba = clf.predict_proba([("great fun", "awful plot"), ("good", "nice"), (None, "x")])
    assert np.isnan(proba[2]).all() and not np.isnan(proba[:2]).any()
    types = seen[0]["token_type_ids"]
    assert types.shape == seen[0]["input_ids"].shape and (types.sum(dim=1) > 0).all()
    out = clf.predict([("great fun", "awful plot")])
    assert out[0]["label"] in ("agree", "differ")


def test_evaluate_reads_both_texts(pair_model, tmp_path):
    pair_frame(40, seed=4).to_csv(tmp_path / "test.csv", index=False)
    report = bertfit.evaluate(pair_model, tmp_path / "test.csv", report=tmp_path / "r")
    assert report["n"] == 40 and (tmp_path / "r" / "report.html").is_file()
    assert " [SEP] " in (tmp_path / "r" / "report.html").read_text()  # examples show both texts
