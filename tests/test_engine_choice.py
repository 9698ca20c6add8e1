"""`--engine auto` on a torch folder: OpenVINO (converted in-process) only when measured faster and in agreement,
only in jobs big enough for a conversion to pay, remembered, and with the same outputs as torch."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import long_text, multilabel_frame, pair_frame, sentiment_frame

from bertfit.data.cache import cache_root
from bertfit.modeling import cpu_emulates_bf16
from bertfit.prediction import engine_choice
from bertfit.prediction.classifier import Classifier, predict_file
from bertfit.prediction.engine_choice import EngineTrial, pick
from bertfit.prediction.engines import OpenVinoForward
from bertfit.prediction.scorer import Scorer

pytest.importorskip("openvino")

CONVERTED: dict = {}  # (weights, pairs) -> openvino.Model, for the session
COMPILED: dict = {}  # id(openvino.Model) -> OpenVinoForward


@pytest.fixture(autouse=True)
def every_job_converts_and_each_model_once(monkeypatch):
    """Every job here may convert (as a file of 5,000+ rows does), and each model is converted and compiled once
    for the session: OpenVINO takes 3-6 s to convert and compile even the tiny BERT on 2 shared cores."""
    monkeypatch.setattr(engine_choice, "CONVERT_MIN_ROWS", 1)
    real_convert, real_forward = engine_choice.convert, engine_choice.OpenVinoForward

    def convert(scorer, encoded):
        weights = sum(float(p.double().sum()) for p in scorer.model.parameters())
        key = (round(weights, 6), encoded.type_starts is not None)
        if key not in CONVERTED:
            CONVERTED[key] = real_convert(scorer, encoded)
        return CONVERTED[key]

    def forward(model, threads, hint):
        if isinstance(model, Path):  # a kept model loaded from the cache: loaded for real
            return real_forward(model, threads, hint)
        if id(model) not in COMPILED:
            COMPILED[id(model)] = real_forward(model, threads, hint)
        return COMPILED[id(model)]

    monkeypatch.setattr(engine_choice, "convert", convert)
    monkeypatch.setattr(engine_choice, "OpenVinoForward", forward)


def copied(folder, tmp_path):
    """A copy with new file times: a choice remembered for the original (keyed by its files) does not apply."""
    target = tmp_path / "model"
    shutil.copytree(folder, target, copy_function=shutil.copy)
    return target


@pytest.fixture
def model_copy(tiny_trained, tmp_path):
    return copied(tiny_trained, tmp_path)


def timed(monkeypatch, slow: str, wrong: bool = False) -> None:
    """The `slow` engine (torch or openvino) sleeps 1 ms a row; with `wrong`, OpenVINO's top labels all move."""
    real = Scorer.rows_logits

    def rows_logits(self, encoded, rows, batch_tokens, batch_size, *more):
        logits = real(self, encoded, rows, batch_tokens, batch_size, *more)
        on_openvino = isinstance(self.forward, OpenVinoForward)
        if on_openvino == (slow == "openvino"):
            time.sleep(0.001 * len(rows))
        return np.roll(logits, 1, axis=1) if wrong and on_openvino else logits

    monkeypatch.setattr(Scorer, "rows_logits", rows_logits)


def never(*args, **kwargs):
    raise AssertionError("measured or converted")


def entry_for(folder) -> dict:
    choices = json.loads((cache_root() / "engine.json").read_text())
    return next(e for e in choices.values() if e["model"] == str(folder.resolve()))


def test_openvino_is_kept_only_when_it_agrees_and_beats_torchs_choice():
    fp32, bf16 = EngineTrial("torch", "fp32", 1.0, 1.0), EngineTrial("torch", "bf16", 0.6, 1.0)
    assert pick([fp32, bf16, EngineTrial("openvino", "bf16", 0.3, 0.999)], "bf16").engine == "openvino"
    assert pick([fp32, bf16, EngineTrial("openvino", "bf16", 0.3, 0.99)], "bf16") is bf16  # 1% of labels move
    assert pick([fp32, bf16, EngineTrial("openvino", "bf16", 0.59, 1.0)], "bf16") is bf16  # noise, not a gain
    moved = EngineTrial("torch", "bf16", 0.6, 0.99)  # torch bf16 moved labels: OpenVINO races torch fp32
    assert pick([fp32, moved, EngineTrial("openvino", "bf16", 0.8, 1.0)], "fp32").engine == "openvino"
    assert pick([fp32, bf16], "fp32") is fp32  # OpenVINO failed to convert


def test_a_file_job_runs_on_openvino_when_faster_and_a_later_small_call_reuses_it(model_copy, tmp_path, monkeypatch,
                                                                                   caplog):  # fmt: skip
    sentiment_frame(60, seed=5)[["text"]].to_csv(tmp_path / "in.csv", index=False)
    before = sorted(p.name for p in model_copy.iterdir())
    timed(monkeypatch, slow="torch")
    with caplog.at_level(logging.INFO, logger="bertfit.prediction.engine_choice"):
        done = predict_file(model_copy, tmp_path / "in.csv", tmp_path / "auto.csv", probs=True)
    assert done["engine"] == "openvino" and done["dtype"] in ("bf16", "fp32")
    line = next(r.message for r in caplog.records if r.message.startswith("engine auto: openvino"))
    assert "timed on 128 rows against torch fp32 (OpenVINO's labels checked on 60)" in line
    assert "OpenVINO model kept in" in line
    entry = entry_for(model_copy)
    torch_timed = ["torch"] if cpu_emulates_bf16() else ["torch", "torch"]  # fp32 (and bf16 where it is native)
    assert entry["engine"] == "openvino" and [t["engine"] for t in entry["trials"]] == [*torch_timed, "openvino"]
    assert list(cache_root().glob("openvino/*/openvino_model.xml"))
    assert sorted(p.name for p in model_copy.iterdir()) == before  # nothing written into the model folder
    monkeypatch.undo()
    predict_file(model_copy, tmp_path / "in.csv", tmp_path / "torch.csv", probs=True, engine="torch", dtype="fp32")
    auto, ref = pd.read_csv(tmp_path / "auto.csv"), pd.read_csv(tmp_path / "torch.csv")
    assert list(auto.columns) == list(ref.columns) and len(auto) == len(ref)
    probs = [c for c in ref.columns if c.startswith("prob_")]
    assert np.abs(auto[probs].to_numpy() - ref[probs].to_numpy()).max() < 0.03  # bf16's rounding, no more
    assert (auto.pred_label == ref.pred_label).mean() >= 0.95
    monkeypatch.setattr(engine_choice, "measure_engines", never)
    monkeypatch.setattr(engine_choice, "convert", never)  # the kept OpenVINO model is loaded, not converted again
    again = Classifier.from_pretrained(model_copy)
    assert again.predict(["a good movie"])[0]["label"] and again.engine == "openvino"


def test_select_diverse_works_when_auto_moves_the_scoring_to_openvino(model_copy, tmp_path, monkeypatch):
    """The diverse strategy embeds the pool with the torch model, which stays loaded when auto picks OpenVINO for
    the probabilities (it failed there before: 'embeddings need the torch engine, not openvino')."""
    from bertfit.reviewing.select import select

    sentiment_frame(40, seed=9)[["text"]].to_csv(tmp_path / "pool.csv", index=False)
    timed(monkeypatch, slow="torch")
    summary = select(model_copy, tmp_path / "pool.csv", tmp_path / "auto.csv", n=5, strategy="diverse",
                     diverse_factor=2)  # fmt: skip
    assert entry_for(model_copy)["engine"] == "openvino"  # the probabilities did come from OpenVINO
    monkeypatch.undo()
    texts = pd.read_csv(tmp_path / "pool.csv")["text"].tolist()
    proba = Classifier.from_pretrained(model_copy, engine="torch", dtype="fp32").predict_proba(texts)
    gaps = np.abs(proba[:, 0] - proba[:, 1])
    picked = pd.read_csv(tmp_path / "auto.csv")
    assert summary["picked"] == 5 and picked["row"].is_unique
    # from the 2 x 5 most uncertain rows (OpenVINO's bf16 may reorder rows whose torch fp32 gaps are this close)
    assert (gaps[picked["row"]] <= np.sort(gaps)[9] + 0.015).all()
    assert np.isnan(picked["coverage_distance"].iloc[0]) and (picked["coverage_distance"].iloc[1:] >= 0).all()


@pytest.mark.parametrize("case", ["disagrees", "slower"])
def test_torch_is_kept_when_openvino_disagrees_or_is_slower_and_that_is_remembered(model_copy, tmp_path, monkeypatch,
                                                                                    case):  # fmt: skip
    sentiment_frame(30, seed=6)[["text"]].to_csv(tmp_path / "in.csv", index=False)
    timed(monkeypatch, slow="torch" if case == "disagrees" else "openvino", wrong=case == "disagrees")
    assert predict_file(model_copy, tmp_path / "in.csv", tmp_path / "a.csv")["engine"] == "torch"
    entry = entry_for(model_copy)
    assert entry["engine"] == "torch"
    ov = entry["trials"][-1]
    assert ov["engine"] == "openvino" and (ov["agreement"] < 0.995 if case == "disagrees" else True)
    assert not list(cache_root().glob(f"openvino/*{model_copy.name}*"))
    monkeypatch.setattr(engine_choice, "convert", never)
    assert predict_file(model_copy, tmp_path / "in.csv", tmp_path / "b.csv")["engine"] == "torch"


@pytest.mark.parametrize("kwargs", [{"engine": "torch"}, {"dtype": "fp32"}, {"dtype": "bf16"}])
def test_an_explicit_engine_or_dtype_is_obeyed(model_copy, tmp_path, monkeypatch, kwargs):
    sentiment_frame(10, seed=7)[["text"]].to_csv(tmp_path / "in.csv", index=False)
    monkeypatch.setattr(engine_choice, "measure_engines", never)
    monkeypatch.setattr(engine_choice, "convert", never)
    done = predict_file(model_copy, tmp_path / "in.csv", tmp_path / "o.csv", **kwargs)
    assert done["engine"] == "torch" and done["dtype"] == kwargs.get("dtype", done["dtype"])


def test_a_small_job_never_converts_and_a_large_one_may(model_copy, tmp_path, monkeypatch):
    texts = sentiment_frame(40, seed=8).text.tolist()
    monkeypatch.setattr(engine_choice, "CONVERT_MIN_ROWS", 41)
    monkeypatch.setattr(engine_choice, "measure_engines", never)
    clf = Classifier.from_pretrained(model_copy)
    clf.predict(texts)
    assert clf.engine == "torch" and clf.dtype in ("fp32", "bf16")
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "in.csv", index=False)
    assert predict_file(model_copy, tmp_path / "in.csv", tmp_path / "o.csv")["engine"] == "torch"
    measured = []
    monkeypatch.setattr(engine_choice, "measure_engines", lambda scorer, encoded, *a: measured.append(encoded))
    monkeypatch.setattr(engine_choice, "CONVERT_MIN_ROWS", 40)
    Classifier.from_pretrained(copied(model_copy, tmp_path / "b")).predict_proba(texts)
    assert [len(e.lengths) for e in measured] == [40]


def _pairs(tmp_path):
    pair_frame(40, seed=3)[["premise", "hypothesis"]].to_csv(tmp_path / "in.csv", index=False)
    return {}


def _multi(tmp_path):
    multilabel_frame(40, seed=3)[["text"]].to_csv(tmp_path / "in.csv", index=False)
    return {}


def _windows(tmp_path):
    pd.DataFrame({"text": [long_text(5 + 3 * i, offset=i) for i in range(30)]}).to_csv(tmp_path / "in.csv", index=False)
    return {"long": "sliding", "max_length": 8, "stride": 2}


SLOW = pytest.mark.slow  # trains its model (4-10 s) and converts it (3-6 s)


@pytest.mark.parametrize(
    "model, data",
    [
        pytest.param("pair_model", _pairs, marks=SLOW),
        pytest.param("multi_model", _multi, marks=SLOW),
        ("tiny_trained", _windows),
    ],
)
def test_openvino_outputs_match_torch_for_pairs_multi_label_and_windows(model, data, request, tmp_path, monkeypatch):
    fixture = request.getfixturevalue(model)
    folder = copied(getattr(fixture, "model_dir", fixture), tmp_path)
    options = data(tmp_path)
    timed(monkeypatch, slow="torch")
    done = predict_file(folder, tmp_path / "in.csv", tmp_path / "auto.csv", probs=True, **options)
    assert done["engine"] == "openvino"
    monkeypatch.undo()
    predict_file(folder, tmp_path / "in.csv", tmp_path / "torch.csv", probs=True, engine="torch", dtype="fp32",
                 **options)  # fmt: skip
    auto, ref = pd.read_csv(tmp_path / "auto.csv"), pd.read_csv(tmp_path / "torch.csv")
    assert list(auto.columns) == list(ref.columns) and len(auto) == len(ref) == 40 - 10 * (model == "tiny_trained")
    probs = [c for c in ref.columns if c.startswith("prob_")]
    assert np.abs(auto[probs].to_numpy() - ref[probs].to_numpy()).max() < 0.03
    label = "pred_labels" if "pred_labels" in ref else "pred_label"
    assert (auto[label].fillna("") == ref[label].fillna("")).mean() >= 0.9
