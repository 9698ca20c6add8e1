"""`bertfit check`: planted problems are found with the right counts, streaming in small windows gives the same
report as one window, real clean data has no errors, and the command renders, prints JSON and exits 0, 1 or 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import Result
from conftest import SHARED_DATA
from typer.testing import CliRunner

import bertfit
from bertfit.checks.checker import CheckReport
from bertfit.checks.collector import DataChecker
from bertfit.checks.texts import TextSample, normalise, text_hashes
from bertfit.cli import app
from bertfit.data.io import read_table
from bertfit.tokenization import load_tokenizer

pytestmark = pytest.mark.usefixtures("restore_cli_state")
runner = CliRunner()
EMOTION = SHARED_DATA / "emotion"


def by_code(report: CheckReport, split: str = "train") -> dict[str, bertfit.checks.findings.Finding]:
    found = {}
    for f in report.findings:
        if f.split == split:
            assert f.code not in found, f"two findings {f.code} for {split}"
            found[f.code] = f
    return found


def planted(folder: Path) -> tuple[Path, Path]:
    """Train: three Parquet shards, each holding one label, with every problem planted once; test: a CSV that
    repeats two train texts exactly and one after normalising."""
    shard_a = [(f"joy text {i}", "joy") for i in range(40)] + [
        ("", "joy"),
        ("   ", "joy"),
        ("same text twice", "joy"),
        ("same text twice", "joy"),
        ("i love this", "joy"),  # conflicts with 'I love this!!' (sad) after normalising
        ("cafÃ© was nice", "joy"),  # mojibake
    ]
    shard_b = [(f"sad text {i}", "sad") for i in range(40)] + [
        ("no label here", None),
        ("I love this!!", "sad"),
        ("bad \ufffd bytes", "sad"),  # replacement character
    ]
    shard_c = [(f"angry text {i}", "angry") for i in range(40)] + [
        ("bell\x07 ring", "angry"),  # control character
        ("rare one", "rare"),
        ("rare two", "rare"),
        ("rare three", "rare"),
    ]
    train = folder / "train"
    train.mkdir()
    for name, rows in (("a", shard_a), ("b", shard_b), ("c", shard_c)):
        pd.DataFrame(rows, columns=["text", "label"]).to_parquet(train / f"part-{name}.parquet")
    test_rows = [(f"test text {i}", ["joy", "sad", "angry"][i % 3]) for i in range(10)]
    test_rows += [("joy text 1", "joy"), ("sad text 2", "sad"), ("JOY TEXT 3!", "joy")]
    test = folder / "test.csv"
    pd.DataFrame(test_rows, columns=["text", "label"]).to_csv(test, index=False)
    return train, test


def test_planted_problems_are_found_with_their_counts(tmp_path: Path, tiny_model_dir: Path) -> None:
    train, test = planted(tmp_path)
    report = bertfit.check(train, test=test, model=str(tiny_model_dir), max_length=10, sample_rows=50)
    found = by_code(report)
    assert found["empty_text"].count == 2 and found["empty_text"].severity == "warning"
    assert found["empty_text"].examples == ["part-a.parquet row 41", "part-a.parquet row 42"]
    assert found["missing_label"].count == 1 and found["missing_label"].examples == ["part-b.parquet row 41"]
    assert found["duplicates"].count == 1 and "2 rows, 1 extra copies" in found["duplicates"].message
    assert found["duplicates"].examples == ["'same text twice' x2"]
    assert found["normalised_duplicates"].count == 2  # 'same text twice' and 'i love this' / 'I love this!!'
    conflict = found["conflicting_duplicates"]
    assert (conflict.count, conflict.severity) == (1, "warning") and "(2 rows;" in conflict.message
    assert conflict.examples[0].endswith("(joy 1, sad 1)")
    assert found["mojibake"].count == 1 and "cafÃ©" in found["mojibake"].examples[0]
    assert found["replacement_characters"].count == 1 and found["replacement_characters"].examples[0].startswith(
        "part-b.parquet row 43"
    )
    assert found["control_characters"].count == 1 and "\\x07" in found["control_characters"].examples[0]
    shards = found["shards_single_label"]
    assert shards.count == 3 and shards.severity == "warning"
    assert "part-a.parquet: 100% joy (34% overall)" in shards.examples
    assert found["tiny_classes"].count == 1 and "rare (3)" in found["tiny_classes"].message
    assert found["class_imbalance"].severity == "warning"  # joy 44 / rare 3
    assert report.stats["imbalance_ratio"] == round(44 / 3, 2)
    assert report.stats["splits"]["train"]["label_counts"] == {"joy": 44, "sad": 42, "angry": 41, "rare": 3}
    assert report.stats["splits"]["train"]["rows"] == 133

    leaks = by_code(report, "test")
    assert (leaks["leakage"].count, leaks["leakage"].severity) == (2, "error")  # 2 of 13 rows: above 1%
    assert "2 of 13 test rows (15.4%; 2 distinct texts)" in leaks["leakage"].message
    assert sorted(leaks["leakage"].examples) == ["'joy text 1'", "'sad text 2'"]
    assert (leaks["leakage_normalised"].count, leaks["leakage_normalised"].severity) == (1, "warning")
    assert leaks["leakage_normalised"].examples == ["'JOY TEXT 3!'"]
    assert [f.code for f in report.errors] == ["leakage"]


def test_token_lengths_are_measured_on_a_sample(tmp_path: Path, tiny_model_dir: Path) -> None:
    train, test = planted(tmp_path)
    report = bertfit.check(train, model=str(tiny_model_dir), max_length=10, sample_rows=50)
    tokens = report.stats["splits"]["train"]["tokens"]
    assert tokens["measured_rows"] == 50 and tokens["sampled"] is True
    long = by_code(report)["long_texts"]
    assert "a random sample of 50 rows" in long.message
    # Every usable text at once, with the tokenizer itself: the sample's share must be close to the true share.
    texts = pd.concat([pd.read_parquet(p) for p in sorted(train.iterdir())]).dropna()["text"].str.strip()
    lengths = np.array(
        [len(ids) for ids in load_tokenizer(str(tiny_model_dir))(texts[texts != ""].tolist())["input_ids"]]
    )
    assert abs(tokens["truncated_share"] - float(np.mean(lengths > 10))) < 0.15
    assert long.severity == ("warning" if tokens["truncated_share"] > 0.05 else "info")
    whole = bertfit.check(train, model=str(tiny_model_dir), max_length=10)
    assert whole.stats["splits"]["train"]["tokens"]["truncated_share"] == round(float(np.mean(lengths > 10)), 4)
    assert whole.stats["splits"]["train"]["tokens"]["max"] == lengths.max()


def test_windows_of_any_size_give_the_same_report(tmp_path: Path) -> None:
    train, test = planted(tmp_path)
    whole = bertfit.check(train, test=test, lengths=False)
    checker = DataChecker()
    for split, source in (("train", sorted(train.iterdir())), ("test", [test])):
        for path in source:
            df = read_table(path)
            for start in range(0, len(df), 7):
                checker.add(df.iloc[start : start + 7].reset_index(drop=True), path, split)
    streamed = checker.finish()
    streamed.stats["model"] = None  # check() notes the model it measured lengths with: none here
    assert streamed.to_dict() == whole.to_dict()
    assert len(whole.findings) > 10


def test_normalised_form_and_hashes() -> None:
    texts = pd.Series(["Great movie!!", " great  MOVIE ", "ｇｒｅａｔ　movie", "great-movie", "!!!", "?"])
    assert normalise(texts).tolist() == ["great movie"] * 4 + ["", ""]
    others = pd.Series(["Straße", "naïve CAFÉ", "हिन्दी पाठ", "snake_case", "a\u00a0b"])
    assert normalise(others).tolist() == ["strasse", "naïve café", "हिन्दी पाठ", "snake case", "a b"]
    exact, norm = text_hashes(texts)
    assert len(set(exact.tolist())) == 6 and len(set(norm[:4].tolist())) == 1
    assert norm[4] != norm[5]  # texts that normalise to nothing keep their own hash


def test_example_sample_keeps_every_spelling_of_a_kept_text() -> None:
    sample = TextSample(10)
    texts = pd.Series([f"text {i}" for i in range(200)] + [f"TEXT {i}!" for i in range(200)])
    exact, norm = text_hashes(texts)
    for start in range(0, len(texts), 50):
        sample.add(texts[start : start + 50].tolist(), exact[start : start + 50], norm[start : start + 50])
    kept = {n for _, n in sample.texts.values()}
    assert 0 < len(kept) <= 10
    for i in np.flatnonzero(np.isin(norm, list(kept))):
        assert int(exact[i]) in sample.texts  # both spellings of each kept text


@pytest.mark.parametrize(
    ("train", "test", "code"),
    [
        (pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", "x", "x"]}), None, "too_few_classes"),
        (pd.DataFrame({"text": [f"t{i}" for i in range(60)], "label": [f"l{i}" for i in range(60)]}), None,
         "labels_look_like_text"),
        (pd.DataFrame({"text": ["", " "], "label": ["x", "y"]}), None, "no_rows"),
        (pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]}), pd.DataFrame({"text": ["c"], "label": ["z"]}),
         "unseen_labels"),
    ],
)  # fmt: skip
def test_untrustworthy_data_is_an_error(train: pd.DataFrame, test: pd.DataFrame | None, code: str) -> None:
    report = bertfit.check(train, test=test, lengths=False)
    assert code in [f.code for f in report.errors]


def test_a_single_file_sorted_by_label_is_noted(tmp_path: Path) -> None:
    df = pd.DataFrame({"text": [f"text {i}" for i in range(90)], "label": ["a"] * 30 + ["b"] * 30 + ["c"] * 30})
    df.to_csv(tmp_path / "sorted.csv", index=False)
    found = by_code(bertfit.check(tmp_path / "sorted.csv", lengths=False))
    assert (
        found["sorted_by_label"].severity == "info"
        and "3 runs of equal labels in 90 rows" in found["sorted_by_label"].message
    )
    shuffled = df.sample(frac=1, random_state=0)
    assert "sorted_by_label" not in by_code(bertfit.check(shuffled, lengths=False))


@pytest.mark.skipif(not EMOTION.is_dir(), reason="needs ../shared/data/emotion")
def test_emotion_splits_have_no_errors() -> None:
    report = bertfit.check(EMOTION / "train.parquet", EMOTION / "validation.parquet", EMOTION / "test.parquet")
    assert report.errors == [], [f.message for f in report.errors]
    stats = report.stats["splits"]
    assert [stats[s]["usable_rows"] for s in ("train", "validation", "test")] == [16000, 2000, 2000]
    assert stats["train"]["label_counts"]["surprise"] == 572 and report.stats["imbalance_ratio"] == 9.37
    assert by_code(report)["duplicates"].count == 31
    assert by_code(report, "test")["leakage"].count == 11  # 0.55% of test: a warning, not an error
    assert stats["train"]["tokens"]["sampled"] is False and stats["train"]["tokens"]["truncated_share"] == 0


# The command.


def invoke(*args: object) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def clean(folder: Path) -> tuple[Path, Path]:
    words = ["red", "green", "blue", "black", "white", "gold", "pink", "grey"]
    texts = [f"{a} {b} {c}" for a in words for b in words for c in words][:60]
    df = pd.DataFrame({"text": texts, "label": ["positive", "negative"] * 30})
    df[:50].to_csv(folder / "train.csv", index=False)
    df[50:].to_csv(folder / "test.csv", index=False)
    return folder / "train.csv", folder / "test.csv"


def test_cli_renders_a_table_and_exits_0_without_errors(tmp_path: Path, tiny_model_dir: Path) -> None:
    train, test = clean(tmp_path)
    result = invoke("check", train, "--test", test, "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert "data check" in result.stdout and "label_distribution" in result.stdout
    assert "train 50 of 50 rows usable; test 10 of 10 rows usable" in result.stdout
    assert "0 errors, 0 warnings" in result.stdout


def test_cli_json_and_exit_1_on_errors(tmp_path: Path, tiny_model_dir: Path) -> None:
    train, test = planted(tmp_path)
    result = invoke("check", train, "--test", test, "--model", tiny_model_dir, "--json", "--min-class-rows", "2")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["errors"] == 1 and report["findings"][0]["code"] == "leakage"
    codes = {f["code"] for f in report["findings"]}
    assert {"conflicting_duplicates", "shards_single_label", "mojibake"} <= codes and "tiny_classes" not in codes
    table = invoke("check", train, "--test", test, "--model", tiny_model_dir)
    assert table.exit_code == 1 and "1 errors" in table.stdout and "leakage" in table.stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["nowhere.csv"], ["nowhere.csv", "not found"]),
        (["train.csv", "--test", "nowhere.csv"], ["nowhere.csv", "not found"]),
        (["train.csv", "--text-col", "review"], ["no column 'review'", "pass --text-col text"]),
        (["train.csv", "--label-col", "stars"], ["no column 'stars'", "pass --label-col"]),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    clean(tmp_path)
    result = invoke("check", *[tmp_path / a if a.endswith(".csv") else a for a in args])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stdout == "" and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in errors[0]


def test_train_runs_the_checks_first_and_saves_them_with_the_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    from conftest import sentiment_frame

    train = tmp_path / "train.csv"
    frame = sentiment_frame(120, seed=3)
    frame.to_csv(train, index=False)
    leaked = tmp_path / "val.csv"
    frame.iloc[:30].to_csv(leaked, index=False)  # every validation row is a training row
    base = ["train", str(train), "--model", str(tiny_model_dir), "--epochs", "1", "--batch-size", "16",
            "--report-to", "none", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    result = runner.invoke(app, [*base, "--validation", str(leaked), "-o", str(tmp_path / "m1")])
    assert result.exit_code == 2
    assert "30 of 30 validation rows" in result.stderr and "--no-check" in result.stderr
    assert not (tmp_path / "m1").exists()
    result = runner.invoke(app, [*base, "--validation", str(leaked), "-o", str(tmp_path / "m2"), "--no-check"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m2" / "bertfit.json").read_text())["checks"] is None
    noisy = frame.copy()
    noisy.loc[:9, "text"] = "the same text"  # 10 duplicate rows with both labels: a warning, not an error
    noisy.to_csv(train, index=False)
    result = runner.invoke(app, [*base, "-o", str(tmp_path / "m3")])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "m3" / "checks.json").read_text())
    assert saved["errors"] == 0 and any(f["code"] == "conflicting_duplicates" for f in saved["findings"])
    assert json.loads((tmp_path / "m3" / "bertfit.json").read_text())["checks"]["warnings"] == saved["warnings"]
    assert "carry different labels" in result.stderr
    assert list((tmp_path / "cache" / "checks").glob("*.json"))  # a rerun on the same files reuses it
    skewed = pd.concat([frame[frame.label == "positive"], frame[frame.label == "negative"].head(5)])  # 60 to 5
    skewed.to_csv(train, index=False)
    advice = {}
    for weights in ("none", "auto"):
        result = runner.invoke(app, [*base, "-o", str(tmp_path / f"w-{weights}"), "--class-weights", weights])
        assert result.exit_code == 0, result.output
        advice[weights] = [line for line in result.stderr.splitlines() if "12.0x the rows of the smallest" in line]
    assert advice["none"][0].endswith("consider --class-weights auto")
    assert advice["auto"][0].endswith("training with --class-weights auto")  # not advice to set what is set
