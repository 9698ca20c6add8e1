"""Token attributions: they add up to the logit difference, word pieces merge into words with their original
spans, a chosen label is explained as asked, batching changes nothing, and the CLI prints and writes HTML."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import Result
from typer.testing import CliRunner

from bertfit import explain as explain_module
from bertfit.cli import app
from bertfit.errors import ConfigError, DataError, MissingDependency
from bertfit.prediction.classifier import Classifier

pytest.importorskip("captum")
from captum.attr import LayerIntegratedGradients  # noqa: E402

pytestmark = pytest.mark.usefixtures("restore_cli_state")
runner = CliRunner()
TEXTS = ["the movie was great and fun", "a terrible , boring plot", "i love this film", "so sad"]


@pytest.fixture(scope="module")
def clf(tiny_trained: Path) -> Classifier:
    return Classifier.from_pretrained(tiny_trained, dtype="fp32")


def token_logits_and_attributions(clf: Classifier, text: str, target: int, n_steps: int) -> tuple[float, list[float]]:
    """An independent oracle: logit(text) - logit([CLS] [PAD]... [SEP]) and captum's per-token attributions, for the
    label's logit minus the mean logit over labels."""
    enc = clf.tokenizer([text], return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    baseline = ids.clone()
    baseline[0, 1:-1] = clf.tokenizer.pad_token_id  # every piece but [CLS] and [SEP]

    def centred(i: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        logits = clf.model(input_ids=i, attention_mask=m).logits
        return logits - logits.mean(-1, keepdim=True)

    with torch.no_grad():
        diff = centred(ids, mask)[0, target] - centred(baseline, mask)[0, target]
    lig = LayerIntegratedGradients(centred, clf.model.get_input_embeddings())
    attr = lig.attribute(ids, baseline, additional_forward_args=(mask,), target=target, n_steps=n_steps)
    return float(diff), attr.sum(-1)[0].tolist()


def test_attributions_add_up_to_the_logit_difference(clf: Classifier) -> None:
    explanations = clf.explain(TEXTS, n_steps=200)
    for e, text in zip(explanations, TEXTS):
        diff, _ = token_logits_and_attributions(clf, text, clf.labels.index(e.label), n_steps=10)
        assert e.logit_diff == pytest.approx(diff, rel=1e-4, abs=1e-7)
        # The tiny model's raw logits are small, so the check is relative;
        # the difference itself must be clearly above float noise for the check to say anything.
        assert abs(e.logit_diff) > 5e-3
        # Completeness: every token's attribution (specials carry none) sums to the logit difference.
        assert abs(sum(e.attributions) - e.logit_diff) <= 1e-3 * abs(e.logit_diff)
        assert abs(e.delta) <= 1e-3 * abs(e.logit_diff)
        assert sum(e.attributions) - e.logit_diff == pytest.approx(e.delta, abs=1e-7)


def test_few_steps_leave_a_measurable_gap_that_more_steps_close(clf: Classifier) -> None:
    [coarse] = clf.explain(["great"], n_steps=3)
    [fine] = clf.explain(["great"], n_steps=200)
    assert abs(fine.delta) < abs(coarse.delta) / 100  # the delta is the integral's error, not a constant 0


def test_word_pieces_merge_into_words_with_their_original_spans(clf: Classifier) -> None:
    text = "  Great ZEBRA movie!"
    [e] = clf.explain([text], n_steps=50)
    assert clf.tokenizer.tokenize(text) == ["great", "z", "##e", "##b", "##r", "##a", "movie", "!"]
    assert e.words == ["Great", "ZEBRA", "movie", "!"]
    assert [text[start:end] for start, end in e.spans] == e.words
    _, tokens = token_logits_and_attributions(clf, text, clf.labels.index(e.label), n_steps=50)
    assert tokens[0] == 0.0 and tokens[-1] == 0.0  # [CLS], [SEP]: same as the baseline
    pieces = [tokens[1], sum(tokens[2:7]), tokens[7], tokens[8]]
    assert e.attributions == pytest.approx(pieces, abs=1e-5)
    assert len(set(tokens[2:7])) == 5  # five different pieces: the sum is not one piece counted five times


def test_a_chosen_label_is_explained_instead_of_the_predicted_one(clf: Classifier) -> None:
    proba = clf.predict_proba(["the movie was great and fun"])[0]
    [predicted] = clf.explain(["the movie was great and fun"], n_steps=100)
    [chosen] = clf.explain(["the movie was great and fun"], label="negative", n_steps=100)
    assert predicted.label == predicted.predicted == "positive" == chosen.predicted
    assert chosen.label == "negative"
    assert predicted.score == pytest.approx(proba[clf.labels.index("positive")], abs=1e-5)
    assert chosen.score == pytest.approx(proba[clf.labels.index("negative")], abs=1e-5)
    assert abs(sum(chosen.attributions) - chosen.logit_diff) <= 1e-3 * abs(chosen.logit_diff)
    great = predicted.words.index("great")
    assert predicted.attributions[great] > 0 > chosen.attributions[great]
    assert predicted.top(1)[0][0] == "great"


def test_batched_equals_one_at_a_time_and_order_is_kept(clf: Classifier) -> None:
    together = clf.explain(TEXTS, n_steps=20, internal_batch_size=16)
    for e, text in zip(together, TEXTS):
        [alone] = clf.explain([text], n_steps=20)
        assert e.text == text and e.words == alone.words and e.label == alone.label
        assert e.attributions == pytest.approx(alone.attributions, rel=1e-3, abs=1e-6)


def test_a_bf16_classifier_is_explained_in_fp32(tiny_trained: Path, clf: Classifier) -> None:
    half = Classifier.from_pretrained(tiny_trained, dtype="bf16")
    [e] = half.explain(["i love this film"], n_steps=100)
    assert next(half.model.parameters()).dtype == torch.bfloat16  # the classifier itself is left as it was
    assert abs(sum(e.attributions) - e.logit_diff) <= 1e-3 * abs(e.logit_diff)
    [exact] = clf.explain(["i love this film"], n_steps=100)
    assert e.attributions == pytest.approx(exact.attributions, rel=0.1, abs=1e-3)  # bf16-rounded weights


@pytest.mark.parametrize(
    ("texts", "kwargs", "error", "fragment"),
    [
        (["good"], {"label": "joy"}, ConfigError, "unknown label 'joy'; the model's labels are 'negative', 'positive'"),
        (["good", "  "], {}, DataError, "text 2 of 2 is empty"),
        ("good movie", {}, DataError, "wrap a single text in a list"),
        (["good"], {"n_steps": 0}, ConfigError, "n_steps must be at least 1"),
    ],
)
def test_bad_requests_raise_one_line_errors(clf, texts, kwargs, error, fragment) -> None:
    with pytest.raises(error, match=fragment.replace("(", r"\(")):
        clf.explain(texts, **kwargs)


def test_missing_captum_names_the_extra(clf: Classifier, tiny_trained: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "captum", None)
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    with pytest.raises(MissingDependency, match=r"needs the package 'captum'.*pip install 'bertfit\[explain\]'"):
        clf.explain(["good"])
    result = invoke("explain", tiny_trained, "good movie")
    assert_user_error(result, "pip install 'bertfit[explain]'")


# -- the command line --------------------------------------------------------------------------------------------


def invoke(*args: object) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def assert_user_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_cli_prints_label_score_coloured_words_and_the_check(tiny_trained: Path, clf: Classifier) -> None:
    result = invoke("explain", tiny_trained, "The movie was GREAT", "so sad", "--steps", "100")
    assert result.exit_code == 0, result.output
    [first, second] = clf.explain(["The movie was GREAT", "so sad"], n_steps=100)
    out = result.stdout
    assert f"{first.label} {first.score:.3f}" in out and f"{second.label} {second.score:.3f}" in out
    assert "The movie was GREAT" in out and "top: GREAT +" in out
    assert out.count("completeness: attributions sum to") == 2
    assert f"logit difference {first.logit_diff:+.4f}" in out


def test_cli_json_and_a_chosen_label(tiny_trained: Path) -> None:
    result = invoke("explain", tiny_trained, "i love this film", "--label", "negative", "--json", "--steps", "20")
    assert result.exit_code == 0, result.output
    [e] = json.loads(result.stdout)
    assert e["label"] == "negative" and e["predicted"] == "positive"
    assert e["words"] == ["i", "love", "this", "film"] and e["spans"][1] == [2, 6]
    assert len(e["attributions"]) == 4 and {"score", "delta", "logit_diff", "text"} <= set(e)


def test_cli_writes_one_html_page_for_a_file(tiny_trained: Path, tmp_path: Path) -> None:
    rows = ["The <b>movie</b> was great & fun", "", "a terrible, boring plot", "I LOVE this film"]
    pd.DataFrame({"review": rows, "id": range(4)}).to_csv(tmp_path / "in.csv", index=False)
    page = tmp_path / "out.html"
    result = invoke("explain", tiny_trained, "--input", tmp_path / "in.csv", "--text-col", "review", "-o", page)
    assert result.exit_code == 0, result.output
    assert "wrote 3 explanations" in result.stdout  # the empty row is skipped
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and html.count("<section>") == 3
    assert "<b>" not in html and "&lt;</span>" in html and ">&amp;</span>" in html  # the text's markup is escaped
    for word in ["The", "movie", "great", "fun", "terrible", "boring", "plot", "LOVE", "film"]:
        assert f">{word}</span>" in html
    assert "<script" not in html and "<link" not in html and "http" not in html  # self-contained
    assert "positive" in html and "legend" in html
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.html"]


def test_html_is_written_atomically(clf: Classifier, tmp_path: Path, monkeypatch) -> None:
    page = tmp_path / "out.html"
    explanations = clf.explain(["great fun"], n_steps=10)
    explain_module.write_html(explanations, page)
    before = page.read_bytes()

    def broken(_):
        raise RuntimeError("disk full")

    monkeypatch.setattr(explain_module, "render_html", broken)
    with pytest.raises(RuntimeError):
        explain_module.write_html(explanations, page)
    assert page.read_bytes() == before  # the old page is untouched and no partial file is left
    assert [p.name for p in tmp_path.iterdir()] == ["out.html"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--input", "{tmp}/missing.csv"], "missing.csv: file not found"),
        (["--input", "{tmp}/in.csv", "--text-col", "tweet"], "no column 'tweet'"),
        (["good", "--input", "{tmp}/in.csv"], "not both"),
        ([], "give texts to explain or an input file"),
        (["good", "-o", "{tmp}/out.txt"], "expected a .html or .htm file name"),
        (["good", "-o", "{tmp}/nowhere/out.html"], "does not exist"),
        (["good", "--label", "joy"], "unknown label 'joy'"),
        (["good", "--steps", "0"], "n_steps must be at least 1"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(tiny_trained: Path, tmp_path: Path, args, fragment) -> None:
    pd.DataFrame({"text": ["good movie"]}).to_csv(tmp_path / "in.csv", index=False)
    result = invoke("explain", tiny_trained, *[a.format(tmp=tmp_path) for a in args])
    assert_user_error(result, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_cli_error_for_a_missing_model(tmp_path: Path) -> None:
    assert_user_error(invoke("explain", tmp_path / "nope", "good"), "model folder not found")
