"""`--dtype auto` on a CPU: measured on the first rows scored, kept only when faster and in agreement, remembered."""

from __future__ import annotations

import json
import logging
import shutil
import time

import numpy as np
import pytest
import torch
from conftest import sentiment_frame

from bertfit.data.cache import cache_root
from bertfit.prediction import dtype_choice
from bertfit.prediction.classifier import Classifier
from bertfit.prediction.dtype_choice import Trial, choose
from bertfit.prediction.scorer import Scorer

TORCH = {"fp32": torch.float32, "bf16": torch.bfloat16}


@pytest.fixture(autouse=True)
def a_cpu_worth_measuring(request):
    """The measuring is tested on any CPU: as if this one had native bf16 (an AVX2-only CPU skips measuring). Its
    own MonkeyPatch, so that a test's monkeypatch.undo() keeps it."""
    with pytest.MonkeyPatch.context() as patch:
        if "emulated" not in request.node.name:
            patch.setattr(dtype_choice, "cpu_emulates_bf16", lambda: False)
        yield


def test_a_cpu_that_emulates_bf16_gets_fp32_without_measuring(model_copy, monkeypatch, caplog):
    """x86 without AVX512-BF16 or AMX: bf16 is emulated (0.11x fp32 measured on an AVX2 EPYC), so auto takes fp32
    at once, says why, measures nothing and remembers nothing."""
    monkeypatch.setattr(dtype_choice, "cpu_emulates_bf16", lambda: True)
    slowed(monkeypatch, "fp32")  # even a bf16 that would time faster is not tried
    caplog.set_level(logging.INFO, logger="bertfit")
    clf = Classifier.from_pretrained(model_copy)
    probs = clf.predict_proba(sentiment_frame(20, seed=3).text.tolist())
    assert clf.dtype == "fp32" and next(clf.model.parameters()).dtype == torch.float32
    assert "bf16 would be emulated; not measured" in caplog.text and "timed on" not in caplog.text
    remembered = dtype_choice.read_choices().values()
    assert not [e for e in remembered if e.get("model") == str(model_copy.resolve())]
    fp32 = Classifier.from_pretrained(model_copy, dtype="fp32").predict_proba(sentiment_frame(20, seed=3).text.tolist())
    np.testing.assert_array_equal(probs, fp32)
    cast_to: list[str] = []  # what an engine choice times of torch (it measures through `measure`): fp32 alone
    trials = dtype_choice.measure(lambda rows: np.zeros((len(rows), 2)), lambda d, **k: cast_to.append(d), np.ones(9))
    assert [t.dtype for t in trials] == ["fp32"] and cast_to == ["fp32"]


def test_the_fastest_agreeing_precision_wins_and_fp32_otherwise():
    fp32 = Trial("fp32", 1.0, 1.0)
    assert choose([fp32, Trial("bf16", 0.6, 0.999)]).dtype == "bf16"
    assert choose([fp32, Trial("bf16", 0.6, 0.99)]).dtype == "fp32"  # faster, but 1% of the labels change
    assert choose([fp32, Trial("bf16", 1.3, 1.0)]).dtype == "fp32"  # slower (a CPU that emulates bf16)
    assert choose([fp32, Trial("bf16", 0.98, 1.0)]).dtype == "fp32"  # 2% is timing noise, not a gain


@pytest.fixture
def model_copy(tiny_trained, tmp_path):
    """A model folder whose files are new (not copied with their times), so that no choice remembered for another
    copy applies to it: the choice is keyed by the files' names, sizes and times."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_trained, folder, copy_function=shutil.copy)
    return folder


def slowed(monkeypatch, slow: str, wrong: str | None = None) -> None:
    """Scoring in the `slow` dtype sleeps (as fp32 does beside AMX, or emulated bf16); in the `wrong` dtype the
    top label of every row moves to the next class."""
    real = Scorer.rows_logits

    def rows_logits(self, encoded, rows, batch_tokens, batch_size, *more):
        logits = real(self, encoded, rows, batch_tokens, batch_size, *more)
        now = {v: k for k, v in TORCH.items()}[next(self.model.parameters()).dtype]
        if now == slow:
            time.sleep(0.002 * len(rows))
        return np.roll(logits, 1, axis=1) if now == wrong else logits

    monkeypatch.setattr(Scorer, "rows_logits", rows_logits)


@pytest.mark.parametrize("slow, expected", [("fp32", "bf16"), ("bf16", "fp32")])
def test_auto_keeps_the_faster_precision_and_remembers_it(model_copy, monkeypatch, caplog, slow, expected):
    texts = sentiment_frame(40, seed=3).text.tolist()
    slowed(monkeypatch, slow)
    clf = Classifier.from_pretrained(model_copy)
    assert clf.dtype == "auto"  # nothing scored yet
    with caplog.at_level(logging.INFO, logger="bertfit.prediction.dtype_choice"):
        got = clf.predict_proba(texts)
    assert clf.dtype == expected and next(clf.model.parameters()).dtype == TORCH[expected]
    assert [r.message for r in caplog.records if r.message.startswith(f"dtype auto: {expected}, timed on 128 rows")]
    monkeypatch.undo()
    forced = Classifier.from_pretrained(model_copy, dtype=expected).predict_proba(texts)
    assert np.array_equal(got, forced)  # the scores are those of the chosen precision, bit for bit
    choices = json.loads((cache_root() / "dtype.json").read_text())
    entry = next(e for e in choices.values() if e["model"] == str(model_copy.resolve()))
    assert entry["dtype"] == expected and [t["dtype"] for t in entry["trials"]] == ["fp32", "bf16"]
    slowed(monkeypatch, slow)
    for load in (2, 3):  # the first loads measure again, until three measurements are recorded
        with caplog.at_level(logging.INFO, logger="bertfit.prediction.dtype_choice"):
            assert Classifier.from_pretrained(model_copy).predict(texts[:1])
        assert f"measurement {load} of 3, the median decides" in caplog.records[-1].message

    def no_measuring(*args):
        raise AssertionError("measured again")

    monkeypatch.setattr(dtype_choice, "measure", no_measuring)
    again = Classifier.from_pretrained(model_copy)
    assert again.predict(texts[:1]) and again.dtype == expected  # settled: even one text needs no timing


def test_one_measurement_taken_under_load_is_outvoted_by_the_next_two(model_copy, monkeypatch):
    """The first timing is taken while something else loads the CPU (bf16 looks slower): fp32 for that load, but
    the next two loads measure bf16 faster and the median of the three settles on bf16."""
    texts = sentiment_frame(20, seed=5).text.tolist()
    chosen = []
    for slow in ("bf16", "fp32", "fp32"):
        slowed(monkeypatch, slow)
        clf = Classifier.from_pretrained(model_copy)
        clf.predict(texts)
        chosen.append(clf.dtype)
        monkeypatch.undo()
    assert chosen[0] == "fp32" and chosen[2] == "bf16"  # (the second load's median of two may go either way)
    monkeypatch.setattr(dtype_choice, "measure", lambda *a: pytest.fail("measured a fourth time"))
    settled = Classifier.from_pretrained(model_copy)
    settled.predict(texts[:1])
    assert settled.dtype == "bf16"
    entry = json.loads((cache_root() / "dtype.json").read_text())
    runs = next(e for e in entry.values() if e["model"] == str(model_copy.resolve()))["measurements"]
    assert len(runs) == 3 and [t["dtype"] for t in runs[0]] == ["fp32", "bf16"]


def test_a_faster_precision_that_changes_labels_is_not_kept(model_copy, monkeypatch):
    slowed(monkeypatch, slow="fp32", wrong="bf16")
    clf = Classifier.from_pretrained(model_copy)
    clf.predict(sentiment_frame(20, seed=4).text.tolist())
    assert clf.dtype == "fp32"
    entry = json.loads((cache_root() / "dtype.json").read_text())
    fp32, bf16 = next(e for e in entry.values() if e["model"] == str(model_copy.resolve()))["trials"]
    assert bf16["dtype"] == "bf16" and bf16["agreement"] < 0.995 and bf16["seconds"] < fp32["seconds"]


def test_nothing_is_decided_before_a_text_is_scored_and_a_changed_model_is_measured_again(model_copy, monkeypatch):
    clf = Classifier.from_pretrained(model_copy)
    assert [p["label"] for p in clf.predict([None, ""])] == [None, None] and clf.dtype == "auto"
    slowed(monkeypatch, slow="bf16")
    clf.predict(["a good movie"])
    assert clf.dtype == "fp32"
    (model_copy / "config.json").touch()  # new weights or config: the remembered choice no longer applies
    measured = []
    real = dtype_choice.measure
    monkeypatch.setattr(dtype_choice, "measure", lambda *a: measured.append(1) or real(*a))
    Classifier.from_pretrained(model_copy).predict(["a bad movie"])
    assert measured == [1]


def test_an_explicit_dtype_is_never_measured(model_copy, monkeypatch):
    monkeypatch.setattr(dtype_choice, "measure", lambda *a: pytest.fail("measured"))
    for dtype in ("fp32", "bf16"):
        clf = Classifier.from_pretrained(model_copy, dtype=dtype)
        clf.predict(["a good movie"])
        assert clf.dtype == dtype


def test_the_timed_sample_is_bounded_in_rows_and_tokens_and_repeats_few_rows():
    from bertfit.prediction.dtype_choice import TIMED_ROWS, TIMED_TOKENS, timed_sample

    assert len(timed_sample(np.full(10_000, 20))) == TIMED_ROWS  # tweets: the row bound
    long = timed_sample(np.full(100, 512))  # long documents: the token bound
    assert len(long) == TIMED_TOKENS // 512 and list(long) == list(range(len(long)))
    assert list(timed_sample(np.array([5, 7, 9]))[:6]) == [0, 1, 2, 0, 1, 2]  # few rows: repeated
    assert len(timed_sample(np.array([], dtype=np.int64))) == 0


def test_multi_label_agreement_counts_each_labels_decision_not_the_top_label():
    from bertfit.prediction.dtype_choice import decisions

    fp32 = np.array([[2.0, 0.01, -3.0], [-1.0, -2.0, 0.5]])
    bf16 = np.array([[2.0, -0.01, -3.0], [-1.0, -2.0, 0.5]])  # one label of six crosses 0.5
    assert np.mean(decisions(fp32, True) == decisions(bf16, True)) == 5 / 6
    near_tie = np.array([[0.30, 0.31, -4.0]]), np.array([[0.31, 0.30, -4.0]])  # both labels on either way
    assert np.mean(decisions(near_tie[0], True) == decisions(near_tie[1], True)) == 1.0
    assert decisions(near_tie[0], False)[0] != decisions(near_tie[1], False)[0]  # the top label flips
