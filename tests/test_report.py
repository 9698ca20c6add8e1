"""Calibration (temperature scaling, ECE) and the evaluation report: fitted in training, applied by predict."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_TRAIN, sentiment_frame
from typer.testing import CliRunner

import bertfit
from bertfit.cli import app
from bertfit.evaluation.calibration import (
    T_RANGE,
    expected_calibration_error,
    fit_temperature,
    reliability_table,
    rescale,
    softmax,
)
from bertfit.prediction.classifier import Classifier

PLOTS = {"confusion.png", "per_class.png", "reliability.png", "error_by_length.png"}


def overconfident(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits three times too sharp: the true probabilities are softmax(logits / 3)."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0, 1.5, size=(n, 3))
    labels = np.array([rng.choice(3, p=p) for p in softmax(true_logits)])
    return 3 * true_logits, labels


def log_loss(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    return float(-np.log(softmax(logits / temperature)[np.arange(len(labels)), labels]).mean())


def test_temperature_undoes_overconfidence_and_lowers_the_log_loss_of_new_rows():
    logits, labels = overconfident()  # labels drawn from the true probabilities: real noise, 1 in 3 wrong
    cal = fit_temperature(logits, labels)
    assert cal.applied and 2.5 < cal.temperature < 3.5 and cal.reason.startswith("applied: ")
    assert cal.errors == int((logits.argmax(1) != labels).sum()) > 1000
    assert cal.ece_after < cal.ece_before / 2 and cal.nll_after < cal.nll_before - 0.2  # cross-fitted figures
    assert cal.ece_before == pytest.approx(expected_calibration_error(softmax(logits), labels))
    fresh, fresh_labels = overconfident(seed=1)  # rows the temperature never saw
    assert log_loss(fresh, fresh_labels, cal.temperature) < log_loss(fresh, fresh_labels) - 0.2


def test_a_validation_split_without_errors_keeps_temperature_one_and_says_why():
    # Every row right: the log-loss falls without end as T -> 0, so a fit would sharpen every score to 1.0.
    logits, _ = overconfident(400)
    cal = fit_temperature(logits, logits.argmax(1))
    assert not cal.applied and cal.temperature == 1.0 and cal.errors == 0
    assert cal.reason == "not fitted: 0 of 400 validation rows misclassified, fewer than 10"
    assert cal.ece_after == cal.ece_before and cal.nll_after == cal.nll_before
    labels = logits.argmax(1)
    labels[:9] = (labels[:9] + 1) % 3  # 9 errors: still too few
    assert fit_temperature(logits, labels).reason.startswith("not fitted: 9 of 400 validation rows misclassified")
    few, few_labels = overconfident(99)  # plenty of errors, too few rows
    assert fit_temperature(few, few_labels).reason == "not fitted: 99 validation rows, fewer than 100"
    assert fit_temperature(*overconfident(100)).applied  # the same kind of rows, one more


def test_an_already_calibrated_model_keeps_temperature_one():
    # The true probabilities: either half's best temperature is off 1 by noise only, and that noise raises the
    # other half's log-loss, so no temperature is applied.
    logits, labels = overconfident()
    cal = fit_temperature(logits / 3, labels)
    assert not cal.applied and cal.temperature == 1.0
    assert cal.reason.startswith("not applied: fitted on either half of the validation rows, it did not lower")
    for seed in range(5):  # smaller splits: a T fitted to noise can win a little by chance (seed 3: 0.3%, 0.1%)
        small, small_labels = overconfident(400, seed)
        assert fit_temperature(small / 3, small_labels).temperature == 1.0, f"seed {seed}"


def test_temperature_is_kept_at_one_when_the_halves_cannot_gain():
    # every row scored 0.75 and exactly 75% right, each half too (the halves share the errors evenly): T = 1 is the
    # best for both, so any fitted T (off 1 by the search tolerance) raises the other half's log-loss
    logits = np.tile([np.log(3.0), 0.0], (400, 1))
    labels = np.array([0] * 300 + [1] * 100)
    cal = fit_temperature(logits, labels)
    assert not cal.applied and cal.temperature == 1.0 and cal.errors == 100
    # ECE is 0 up to rounding (1.1e-16 where numpy sums without AVX-512); T = 1 changes no score
    assert cal.ece_after == cal.ece_before < 1e-12 and cal.nll_after == cal.nll_before


def test_temperature_stays_within_its_range():
    logits, labels = overconfident()
    under = fit_temperature(logits / 30, labels)  # ten times too soft: the best T is 0.1
    assert under.applied and under.temperature == pytest.approx(T_RANGE[0], rel=1e-3)
    over = fit_temperature(logits * 3, labels)  # nine times too sharp: the best T is 9
    assert over.applied and over.temperature == pytest.approx(T_RANGE[1], rel=1e-3)


def test_rescale_equals_softmax_of_scaled_logits():
    logits, _ = overconfident(50)
    assert np.allclose(rescale(softmax(logits), 2.5), softmax(logits / 2.5), atol=1e-9)
    assert np.array_equal(rescale(softmax(logits), 1.0), softmax(logits))


def test_ece_by_hand():
    # two bins: (0.6, 2/3] holds 2 rows at 0.65 with 1 right; (0.9, 0.9667] holds 2 rows at 0.95, both right
    proba = np.array([[0.65, 0.35], [0.35, 0.65], [0.95, 0.05], [0.05, 0.95]])
    labels = np.array([0, 0, 0, 1])
    table = reliability_table(proba, labels)
    assert [b["rows"] for b in table] == [2, 2]
    assert expected_calibration_error(proba, labels) == pytest.approx((2 * 0.15 + 2 * 0.05) / 4)


def test_training_writes_calibration_and_a_report_with_every_plot(tiny_trained):
    meta = json.loads((tiny_trained / "bertfit.json").read_text())
    cal = meta["calibration"]
    # 80 validation rows: too few to fit a temperature on (the tiny model also gets them all right)
    assert cal["rows"] == 80 and not cal["applied"] and cal["temperature"] == 1.0
    assert cal["reason"] == "not fitted: 80 validation rows, fewer than 100"
    metrics = json.loads((tiny_trained / "metrics.json").read_text())
    assert metrics["calibration"]["temperature"] == 1.0 and metrics["calibration"]["reason"] == cal["reason"]
    card = (tiny_trained / "README.md").read_text()
    assert "Temperature 1 (not fitted: 80 validation rows, fewer than 100): scores are the plain softmax" in card
    assert "at least 100 rows and 10 misclassified ones, is searched between 0.5 and 5" in card
    assert sum(b["rows"] for b in metrics["error_by_length"]) == 80
    assert len(metrics["confident_errors"]) + len(metrics["unsure_correct"]) > 0
    assert all(r["text"] != "(text not available)" for r in metrics["unsure_correct"])
    assert_report(tiny_trained / "report", PLOTS | {"training_curve.png"})
    assert "## Calibration" in (tiny_trained / "README.md").read_text()


def test_a_model_right_on_every_validation_row_keeps_temperature_one_and_says_why(tiny_model_dir, tmp_path):
    train_df, val_df = sentiment_frame(320, seed=1), sentiment_frame(200, seed=3)
    result = bertfit.train(train_df, tmp_path / "m", validation=val_df, model=str(tiny_model_dir), progress=False,
                           **TINY_TRAIN)  # fmt: skip
    assert result.metrics["accuracy"] == 1.0
    why = "not fitted: 0 of 200 validation rows misclassified, fewer than 10"
    meta = json.loads((result.model_dir / "bertfit.json").read_text())
    assert meta["calibration"]["temperature"] == 1.0 and meta["calibration"]["reason"] == why
    metrics = json.loads((result.model_dir / "metrics.json").read_text())
    assert metrics["calibration"]["temperature"] == 1.0 and metrics["calibration"]["reason"] == why
    assert f"Temperature 1 ({why}): scores are the plain softmax" in (result.model_dir / "README.md").read_text()
    scores = Classifier.from_pretrained(result.model_dir, dtype="fp32").predict_proba(val_df.text.tolist()).max(1)
    assert np.median(scores) < 0.9  # the old fit (T at its 0.05 bound) scored the median row 0.98, this one 0.55


def assert_report(folder: Path, plots: set[str]) -> None:
    page = (folder / "report.html").read_text()
    referenced = set(re.findall(r'<img src="([^"]+)"', page))
    assert referenced == plots
    for name in referenced:
        png = (folder / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    assert "Most confident errors" in page and "Expected calibration error" in page


@pytest.fixture(scope="module")
def warm_model(tiny_trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a temperature of 2 in its bertfit.json (its own validation rows were too few to fit one)."""
    folder = tmp_path_factory.mktemp("warm") / "model"
    shutil.copytree(tiny_trained, folder)
    meta = json.loads((folder / "bertfit.json").read_text())
    meta["calibration"].update(temperature=2.0, applied=True, reason="set by the test")
    (folder / "bertfit.json").write_text(json.dumps(meta))
    return folder


def test_predict_applies_the_temperature_unless_told_not_to(warm_model, sentiment_data):
    texts = sentiment_data[1].text.tolist()[:20]
    calibrated = Classifier.from_pretrained(warm_model, dtype="fp32").predict_proba(texts)
    plain = Classifier.from_pretrained(warm_model, dtype="fp32", calibration=False).predict_proba(texts)
    assert np.allclose(calibrated, rescale(plain, 2.0), atol=1e-5)
    assert np.allclose(calibrated, softmax(np.log(plain) / 2.0), atol=1e-5)
    assert (calibrated.argmax(1) == plain.argmax(1)).all()
    assert (calibrated.max(1) < plain.max(1) - 1e-3).all()  # T = 2 softens every confident score


def test_evaluate_writes_a_report_and_ece_both_ways(warm_model, sentiment_data, tmp_path):
    result = bertfit.evaluate(warm_model, sentiment_data[1], report=tmp_path / "rep", dtype="fp32")
    assert_report(tmp_path / "rep", PLOTS)
    assert result["temperature"] == 2.0 and result["ece"] != pytest.approx(result["ece_uncalibrated"], abs=1e-3)
    assert result["calibration"]["ece_before_here"] == pytest.approx(result["ece_uncalibrated"])
    assert result["calibration"]["ece_after_here"] == pytest.approx(result["ece"])
    assert "Temperature 2.000 (set by the test)" in (tmp_path / "rep" / "report.html").read_text()
    texts = set(sentiment_data[1].text)
    assert all(r["text"] in texts for r in result["confident_errors"] + result["unsure_correct"])
    plain = bertfit.evaluate(warm_model, sentiment_data[1], dtype="fp32", calibration=False)
    assert plain["ece"] == pytest.approx(plain["ece_uncalibrated"]) and plain["accuracy"] == result["accuracy"]


def test_cli_evaluate_report_and_predict_without_calibration(warm_model, sentiment_data, tmp_path):
    data = tmp_path / "val.csv"
    sentiment_data[1].to_csv(data, index=False)
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", str(warm_model), str(data), "--report", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "expected calibration error" in result.stdout and (tmp_path / "r" / "report.html").is_file()
    out_cal, out_plain = tmp_path / "a.csv", tmp_path / "b.csv"
    for out, extra in ((out_cal, []), (out_plain, ["--no-calibration"])):
        result = runner.invoke(app, ["predict", str(warm_model), str(data), str(out), "--dtype", "fp32", *extra])
        assert result.exit_code == 0, result.output
    import pandas as pd

    a, b = pd.read_csv(out_cal), pd.read_csv(out_plain)
    assert (a.pred_label == b.pred_label).all()
    assert (a.pred_score < b.pred_score - 1e-3).all()  # T = 2 lowers every top score


ODD_NAMES = ["$x^$", "[/]", "a|b", "<b>&amp;", "../x"]


@pytest.mark.parametrize("multi", [False, True], ids=["single-label", "multi-label"])
def test_reports_draw_and_escape_label_names_as_written(multi, tmp_path):
    from bertfit.evaluation.report import ScoredRows, write_multilabel_report, write_report

    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(len(ODD_NAMES)), 60)
    labels = (proba > 0.3).astype(np.uint8) if multi else rng.integers(0, len(ODD_NAMES), 60)
    rows = ScoredRows(labels, proba, np.full(60, 9), lambda idx: ["<i>text</i>"] * len(idx), ODD_NAMES)
    if multi:  # rows get a label at 0.1 ('$x^$' too): the worst rows table shows names
        numbers = write_multilabel_report(tmp_path, rows, np.full(len(ODD_NAMES), 0.1), "$title$ <")
    else:
        numbers = write_report(tmp_path, rows, None, "$title$ <")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "&lt;b&gt;&amp;amp;" in page and "<b>" not in page and "<i>" not in page and "&lt;i&gt;" in page
    assert all((tmp_path / png).stat().st_size > 0 for png in numbers["report"]["plots"])


def test_model_card_front_matter_is_yaml_and_tables_keep_their_cells():
    import yaml

    from bertfit.evaluation.card import model_card

    names = ["a|b", "x\\|y", "$x^$", "[/]", "*", "line\nbreak"]
    per_class = {n: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3, "threshold": 0.5} for n in names}
    base = "models/a: b #1 [x]"  # a local folder name that plain 'key: value' lines turn into other YAML
    meta = {"base_model": base, "data": {"text_cols": ["text|body"]}, "labels": {}}
    card = model_card(meta, {"labels": names, "per_class": per_class, "n": 18, "micro_f1": 1.0})
    _, front, body = card.split("---\n", 2)
    front = yaml.safe_load(front)
    assert {k: front.pop(k) for k in ("library_name", "pipeline_tag", "base_model", "tags")} == {
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "base_model": base,
        "tags": ["bertfit", "text-classification"],
    }
    assert set(front) == {"metrics", "model-index"}  # the validation metrics, for the Hub
    cells = [re.split(r"(?<!\\)\|", line)[1:-1] for line in body.splitlines() if line.startswith("| ")]
    assert [len(c) for c in cells] == [2, 2] + [6] * (1 + len(names))  # metric | value; the per-label table
    shown = [re.sub(r"\\(.)", r"\1", c[0].strip()) for c in cells[3:]]
    assert shown == [n.replace("\n", " ") for n in names]


def test_model_card_loads_with_huggingface_hub_and_holds_the_validation_metrics(tmp_path):
    from huggingface_hub import ModelCard

    from bertfit.evaluation.card import model_card

    metrics = {"accuracy": 0.75, "macro_f1": 0.5, "micro_f1": 0.75, "weighted_f1": 0.625, "mcc": 0.25}
    per_class = {n: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2} for n in ("neg", "<pos>")}
    meta = {"base_model": "prajjwal1/bert-tiny", "data": {"text_cols": ["text"]}, "labels": {}}
    path = tmp_path / "README.md"
    path.write_text(model_card(meta, {**metrics, "labels": ["neg", "<pos>"], "per_class": per_class, "n": 4}))
    card = ModelCard.load(path)
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-classification"
    assert card.data.base_model == "prajjwal1/bert-tiny"
    assert {r.metric_name: r.metric_value for r in card.data.eval_results} == metrics
    assert {r.task_type for r in card.data.eval_results} == {"text-classification"}
    assert sorted(card.data.metrics) == ["accuracy", "f1", "matthews_correlation"]
    assert "| \\<pos\\> | 0.500 |" in card.text  # the body as bertfit writes it


def test_every_template_ships_as_package_data():
    import fnmatch

    import bertfit.templates

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    folder = Path(bertfit.templates.__file__).parent
    declared = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = declared["package-data"]["bertfit.templates"]
    templates = [p.name for p in folder.iterdir() if p.is_file() and p.suffix != ".py"]
    assert {"report.html", "explain.html", "model_card.md.jinja"} <= set(templates)
    assert all(any(fnmatch.fnmatch(name, pattern) for pattern in patterns) for name in templates)
    for name in templates:  # each parses
        env = bertfit.templates.HTML if name.endswith(".html") else bertfit.templates.MARKDOWN
        env.get_template(name)
