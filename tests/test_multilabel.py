"""Multi-label: label sets in, sigmoid/BCE training, per-label thresholds, list predictions, the multi-label metrics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import multilabel_frame
from sklearn.metrics import f1_score, hamming_loss
from typer.testing import CliRunner

import bertfit
from bertfit.cli import app
from bertfit.errors import ConfigError, DataError
from bertfit.evaluation.multilabel import (
    CROSS_FITTED,
    DEFAULT_THRESHOLD,
    cross_fitted_thresholds,
    headline,
    report,
    tune_thresholds,
)
from bertfit.labels import SET_JOIN, LabelSchema, label_sets
from bertfit.prediction.classifier import Classifier


def test_label_sets_are_canonical_for_lists_and_separated_strings():
    raw = pd.Series([["joy", "love"], "love, joy", np.array(["joy"]), [], "joy,joy"], dtype=object)
    assert label_sets(raw).tolist() == [f"joy{SET_JOIN}love", f"joy{SET_JOIN}love", "joy", "", "joy"]
    assert label_sets(pd.Series(["a|b"]), "|").tolist() == [f"a{SET_JOIN}b"]


def test_encode_sets_gives_multi_hot_rows_and_names_unknown_labels():
    schema = LabelSchema(["anger", "joy", "love"], problem_type="multi_label_classification")
    hot = schema.encode_sets(pd.Series([["joy", "love"], [], ["anger"]], dtype=object), "f.csv", "labels")
    assert hot.tolist() == [[0, 1, 1], [0, 0, 0], [1, 0, 0]]
    with pytest.raises(DataError, match=r"f\.csv: column 'labels' has labels .* never saw: 'fear' \(1 rows\)"):
        schema.encode_sets(pd.Series(["joy,fear"]), "f.csv", "labels")


def test_tuned_thresholds_maximise_each_labels_f1_and_rare_labels_keep_the_default():
    rng = np.random.default_rng(0)
    truth = np.zeros((200, 3), dtype=np.uint8)
    truth[:100, 0] = 1
    truth[:2, 2] = 1  # too few positives to tune on
    proba = rng.uniform(0, 0.3, size=(200, 3))
    proba[:100, 0] = rng.uniform(0.2, 0.3, size=100)  # label 0: positives score 0.2-0.3, negatives 0-0.3
    proba[100:, 0] = rng.uniform(0.0, 0.2, size=100)
    thresholds = tune_thresholds(truth, proba)
    assert 0.15 <= thresholds[0] <= 0.2  # separates the two score ranges (0.5 would predict nothing)
    assert thresholds[2] == DEFAULT_THRESHOLD
    tuned = f1_score(truth[:, 0], proba[:, 0] >= thresholds[0])
    assert tuned == 1.0 > f1_score(truth[:, 0], proba[:, 0] >= 0.5, zero_division=0)


def test_metrics_at_tuned_thresholds_are_cross_fitted_and_match_new_rows():
    # Scores with no signal at all: thresholds tuned on the same rows still find cuts that look good there (macro-F1
    # 0.206); on new rows they give 0.176. Cross-fitted metrics (each half at the other half's thresholds) say 0.181.
    rng = np.random.default_rng(0)
    truth, proba = (rng.random((400, 20)) < 0.1).astype(np.uint8), rng.random((400, 20))
    names = [str(i) for i in range(20)]
    stored, held_out = cross_fitted_thresholds(truth, proba)
    assert np.array_equal(stored, tune_thresholds(truth, proba))
    in_sample = report(truth, proba, stored, names)["macro_f1"]
    crossed = report(truth, proba, stored, names, held_out)
    new_truth, new_proba = (rng.random((4000, 20)) < 0.1).astype(np.uint8), rng.random((4000, 20))
    on_new_rows = report(new_truth, new_proba, stored, names)["macro_f1"]
    assert in_sample > crossed["macro_f1"] + 0.02 and abs(crossed["macro_f1"] - on_new_rows) < 0.01
    assert crossed["thresholds_scored"].startswith("cross-fitted")
    assert [crossed["per_class"][n]["threshold"] for n in names] == stored.tolist()  # the stored ones are shown
    # Each row is scored at thresholds tuned on the rows of the other half, never on its own half.
    groups = {tuple(row) for row in held_out}
    assert len(groups) == 2
    for group in groups:
        mine = (held_out == group).all(axis=1)
        assert 199 <= mine.sum() <= 201
        assert np.array_equal(np.array(group), tune_thresholds(truth[~mine], proba[~mine]))


def test_headline_metrics_match_scikit_learn_and_subset_accuracy_counts_whole_rows():
    truth = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    pred = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 1]])
    m = headline(truth, pred)
    assert m["accuracy"] == 0.5  # rows 0 and 3 have every label right
    assert m["micro_f1"] == pytest.approx(f1_score(truth, pred, average="micro"))
    assert m["macro_f1"] == pytest.approx(f1_score(truth, pred, average="macro"))
    assert m["samples_f1"] == pytest.approx(f1_score(truth, pred, average="samples"))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(truth, pred)) == pytest.approx(2 / 12)
    none = np.zeros((2, 3), dtype=int)
    assert headline(none, none)["samples_f1"] == 1.0  # no labels, rightly none predicted
    assert headline(none, np.array([[0, 1, 0], [0, 0, 0]]))["samples_f1"] == 0.5


def test_a_list_column_trains_a_multi_label_model_with_stored_thresholds(multi_model):
    meta = json.loads((multi_model.model_dir / "bertfit.json").read_text())
    config = json.loads((multi_model.model_dir / "config.json").read_text())
    assert meta["labels"]["problem_type"] == config["problem_type"] == "multi_label_classification"
    assert sorted(meta["thresholds"]["values"]) == ["negative", "positive"]
    assert meta["calibration"] is None  # temperature scaling is for softmax models
    assert multi_model.metrics["micro_f1"] > 0.9 and multi_model.metrics["samples_f1"] > 0.9
    assert {"hamming_loss", "samples_f1", "per_class"} <= set(multi_model.metrics)
    assert multi_model.metrics["per_class"]["positive"]["threshold"] == meta["thresholds"]["values"]["positive"]
    html = (multi_model.model_dir / "report" / "report.html").read_text()
    assert "subset accuracy" in html and "threshold" in html
    card = (multi_model.model_dir / "README.md").read_text()
    assert "samples_f1" in card and "The validation metrics below are cross-fitted" in card
    metrics = json.loads((multi_model.model_dir / "metrics.json").read_text())
    assert metrics["thresholds_scored"] == multi_model.metrics["thresholds_scored"] == CROSS_FITTED
    assert f"Predicted {CROSS_FITTED}" in html


def test_predict_gives_label_lists_and_every_labels_score(multi_model):
    clf = Classifier.from_pretrained(multi_model.model_dir, dtype="fp32")
    out = clf.predict(["great fun movie", "awful boring plot", "the great and the awful", "the film", ""])
    assert out[0]["labels"] == ["positive"] and out[1]["labels"] == ["negative"]
    assert sorted(out[2]["labels"]) == ["negative", "positive"] and out[3]["labels"] == []
    assert set(out[0]["scores"]) == {"negative", "positive"} and out[0]["scores"]["positive"] > 0.5
    assert out[4] == {"labels": None, "scores": None}
    low = Classifier.from_pretrained(multi_model.model_dir, dtype="fp32", threshold=0.001)
    assert sorted(low.predict(["the film"])[0]["labels"]) == ["negative", "positive"]


def test_predict_file_writes_pred_labels_and_prob_columns_one_row_per_input(multi_model, tmp_path):
    frame = multilabel_frame(40, seed=5)
    frame.loc[3, "text"] = ""
    frame[["text"]].to_csv(tmp_path / "in.csv", index=False)
    bertfit.predict_file(multi_model.model_dir, tmp_path / "in.csv", tmp_path / "out.csv", dtype="fp32")
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert len(out) == 40 and {"pred_labels", "prob_negative", "prob_positive"} <= set(out.columns)
    assert out.loc[3, "pred_labels"] == ""
    hits = [set(filter(None, p.split(","))) == set(t) for p, t in zip(out["pred_labels"], frame["labels"])]
    assert np.mean(hits) > 0.8


def test_evaluate_reads_comma_separated_labels_against_a_list_trained_model(multi_model, tmp_path):
    frame = multilabel_frame(80, seed=6)
    frame["label"] = frame["labels"].map(",".join)  # a row with no labels is an empty string
    frame[["text", "label"]].to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    report = bertfit.evaluate(multi_model.model_dir, tmp_path / "test.jsonl", label_col="label", report=tmp_path / "r")
    assert report["problem_type"] == "multi_label_classification" and report["n"] == 80
    assert report["rows_without_labels"] == 20 and report["dropped"] == {}
    assert report["micro_f1"] > 0.8 and 0 <= report["hamming_loss"] < 0.2
    assert (tmp_path / "r" / "report.html").is_file() and (tmp_path / "r" / "per_class.png").is_file()


def test_evaluate_counts_false_positives_on_rows_with_no_labels(multi_model, tmp_path):
    frame = multilabel_frame(40, seed=7)
    frame["label"] = frame["labels"].map(",".join)
    decoys = pd.DataFrame({"text": ["great fun and wonderful"] * 10, "label": [""] * 10})  # positive words, no labels
    frame[["text", "label"]].to_json(tmp_path / "plain.jsonl", orient="records", lines=True)
    pd.concat([frame[["text", "label"]], decoys]).to_json(tmp_path / "decoys.jsonl", orient="records", lines=True)
    plain = bertfit.evaluate(multi_model.model_dir, tmp_path / "plain.jsonl", label_col="label")
    with_decoys = bertfit.evaluate(multi_model.model_dir, tmp_path / "decoys.jsonl", label_col="label")
    assert with_decoys["n"] == 50 and with_decoys["rows_without_labels"] == plain["rows_without_labels"] + 10
    positive, before = with_decoys["per_class"]["positive"], plain["per_class"]["positive"]
    assert positive["support"] == before["support"] and positive["recall"] == before["recall"]
    assert positive["precision"] < before["precision"] - 0.1  # every decoy the model marks positive is an error


@pytest.mark.parametrize("form", ["csv with spaces", "jsonl", "frame"])
def test_rows_with_an_empty_label_cell_are_trained_on_as_all_zero_rows(form, tiny_model_dir, tmp_path, caplog):
    from transformers import AutoTokenizer

    from bertfit.config import DataConfig
    from bertfit.data.cache import tokenize_labelled

    frame = multilabel_frame(40, seed=4)
    frame["label"] = frame["labels"].map(",".join).replace("", " " if form == "csv with spaces" else "")
    frame.loc[1, "label"] = None  # a missing label: dropped
    source = {"csv with spaces": tmp_path / "t.csv", "jsonl": tmp_path / "t.jsonl", "frame": frame}[form]
    if form == "jsonl":
        frame[["text", "label"]].to_json(source, orient="records", lines=True)
    elif form != "frame":
        frame[["text", "label"]].to_csv(source, index=False)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    with caplog.at_level("INFO", logger="bertfit"):
        data, schema = tokenize_labelled(source, DataConfig(label_sep=","), tokenizer, 16, tmp_path / "cache")
    if form.startswith("csv"):  # CSV has no null: the empty field is a row with no labels, kept
        kept, missing = frame.assign(labels=[[] if i == 1 else s for i, s in enumerate(frame["labels"])]), 0
    else:
        kept, missing = frame.drop(index=1), 1
    assert schema.names == ["negative", "positive"] and data.dropped == {"empty text": 0, "missing label": missing}
    expected = [[int("negative" in s), int("positive" in s)] for s in kept["labels"]]
    empty = expected.count([0, 0])
    assert data.labels.tolist() == expected and empty >= 10
    assert f"{empty} rows have no labels (negative for every label)" in caplog.text


def test_an_empty_csv_label_field_is_a_row_with_no_labels(tiny_model_dir, tmp_path):
    frame = multilabel_frame(40, seed=4)
    frame["label"] = frame["labels"].map(",".join)
    frame[["text", "label"]].to_csv(tmp_path / "t.csv", index=False)
    report = bertfit.check(tmp_path / "t.csv", label_sep=",", lengths=False)
    assert report.stats["splits"]["train"]["usable_rows"] == 40


def test_check_keeps_rows_with_no_labels_and_counts_them():
    frame = multilabel_frame(40, seed=1)
    frame["label"] = frame["labels"].map(",".join)
    frame.loc[0, "label"] = None
    report = bertfit.check(frame[["text", "label"]], label_sep=",", lengths=False)
    split = report.stats["splits"]["train"]
    assert split["usable_rows"] == 39 and split["rows_without_labels"] == 10
    assert {f.code: f.count for f in report.findings if f.code in ("no_labels", "missing_label")} == {
        "no_labels": 10,
        "missing_label": 1,
    }


def test_explain_refuses_multi_label_models_in_one_line(multi_model):
    clf = Classifier.from_pretrained(multi_model.model_dir)
    with pytest.raises(ConfigError, match="explain works with single-label, single-text models; this is a multi-label"):
        clf.explain(["great fun"])


def test_a_model_starts_at_each_labels_base_rate():
    from bertfit.evaluation.multilabel import start_at_base_rates
    from bertfit.prediction.decoder import sigmoid

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 3))
    labels = np.array([[1, 0, 0]] * 1 + [[0, 1, 0]] * 3 + [[0, 0, 0]] * 6, dtype=np.uint8)
    start_at_base_rates(model, labels)
    assert sigmoid(model[1].bias.detach().numpy()) == pytest.approx([0.1, 0.3, 1e-4], rel=1e-3)


def test_transformers_pipeline_loads_it_with_sigmoid_scores(multi_model):
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(multi_model.model_dir), top_k=None, device="cpu")
    clf = Classifier.from_pretrained(multi_model.model_dir, dtype="fp32")
    texts = ["great fun movie", "awful boring plot", "the great and the awful"]
    theirs = [{d["label"]: d["score"] for d in row} for row in pipe(texts)]
    ours = clf.predict_proba(texts)
    for row, probs in zip(theirs, ours):
        assert [row[name] for name in clf.labels] == pytest.approx(probs.tolist(), abs=1e-5)


def test_cli_label_sep_trains_multi_label_and_rejects_mcc(tiny_model_dir, tmp_path, restore_cli_state):
    frame = multilabel_frame(160, seed=3)
    frame["label"] = frame["labels"].map("|".join).replace("", "none")
    frame[["text", "label"]].to_csv(tmp_path / "train.csv", index=False)
    base = ["train", str(tmp_path / "train.csv"), "--model", str(tiny_model_dir), "--label-sep", "|", "--epochs", "1"]
    bad = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "bad"), "--best-metric", "mcc"])
    assert bad.exit_code == 2 and "best_metric mcc is for one label per text" in bad.output
    assert not (tmp_path / "bad").exists()
    done = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "m"), "--json", "--thresholds", "global"])
    assert done.exit_code == 0, done.output
    meta = json.loads((tmp_path / "m" / "bertfit.json").read_text())
    assert meta["labels"]["names"] == ["negative", "none", "positive"] and meta["labels"]["label_sep"] == "|"
    assert set(meta["thresholds"]["values"].values()) == {0.5} and meta["thresholds"]["how"] == "global"


def test_label_sets_in_validation_for_a_single_label_run_are_a_clear_error(tiny_model_dir, tmp_path):
    train = pd.DataFrame({"text": ["great", "awful"] * 20, "labels": ["positive", "negative"] * 20})
    val = multilabel_frame(8, seed=1)
    with pytest.raises(DataError, match="holds sets of labels, but the training data .* has one label per row"):
        bertfit.train(train, tmp_path / "m", validation=val, model=str(tiny_model_dir), label_col="labels",
                      progress=False, epochs=1)  # fmt: skip
    assert not (tmp_path / "m").exists()


def test_class_weights_auto_raise_the_first_loss_by_the_hand_computed_factor(tiny_model_dir, tmp_path, caplog):
    # 'positive' in 1 row of 4 (pos_weight 3), 'negative' in 2 of 4 (pos_weight 1). The head starts at each label's
    # base rate p, so before the first step each label costs its entropy -p ln p - (1-p) ln(1-p) a cell, and with
    # pos_weight (1-p)/p on the positive term -(1-p) ln(p (1-p)): 1.2555 against 0.5623 for 'positive', the same
    # 0.6931 for 'negative'. The first logged loss (all 64 rows in one batch) must rise by that factor, 1.552.
    frame, kind = multilabel_frame(128, seed=3), np.arange(128) % 4  # 0 positive, 1 both, 2 negative, 3 none
    frame = pd.concat([frame[kind == 0][:16], frame[kind == 2], frame[kind == 3][:16]])  # 64 rows
    p = np.array([0.5, 0.25])  # base rates of negative, positive (labels sort by name)
    entropy, weighted = -p * np.log(p) - (1 - p) * np.log(1 - p), -(1 - p) * np.log(p * (1 - p))
    first, val = {}, multilabel_frame(16, seed=4)
    caplog.set_level("INFO", logger="bertfit")
    for spec in ("none", "auto"):
        out = tmp_path / spec
        bertfit.train(frame, out, validation=val, model=str(tiny_model_dir), label_col="labels",
                      class_weights=spec, batch_size=64, max_steps=1, warmup=0.0, lr=1e-3, progress=False)  # fmt: skip
        log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
        first[spec] = next(e["loss"] for e in log if "loss" in e)
    print(f"first loss {first}, by hand {entropy.mean():.4f} and {weighted.mean():.4f}")
    assert "positive-class weights: negative 1, positive 3" in caplog.text
    assert first["none"] == pytest.approx(entropy.mean(), rel=0.02)
    assert first["auto"] / first["none"] == pytest.approx(weighted.mean() / entropy.mean(), rel=0.02)


def test_check_counts_rows_per_single_label(tmp_path):
    frame = multilabel_frame(40, seed=1)
    report = bertfit.check(frame, label_col="labels")
    counts = report.stats["splits"]["train"]["label_counts"]
    assert counts == {"positive": 20, "negative": 20}
    assert not report.errors


def test_labels_with_no_label_in_any_row_are_a_clear_error(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    from bertfit.config import DataConfig
    from bertfit.data.cache import tokenize_labelled

    frame = pd.DataFrame({"text": ["good film", "bad film"] * 5, "label": ["", " "] * 5})
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    with pytest.raises(DataError, match="column 'label' has no labels in any row; a classifier needs at least two"):
        tokenize_labelled(frame, DataConfig(multi_label=True), tokenizer, 16, tmp_path, role="train.csv")
