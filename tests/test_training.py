from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_TRAIN, sentiment_frame
from transformers import AutoConfig

import bertfit
from bertfit.data.cache import split_rows
from bertfit.data.sample import VALIDATION_SAMPLE, read_validation_sample
from bertfit.errors import DataError


def test_model_folder_is_complete_and_hugging_face_shaped(tiny_trained):
    files = {p.name for p in tiny_trained.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "bertfit.json",
        "metrics.json",
        "README.md",
    } <= files
    assert "training_args.bin" not in files and not any(n.endswith(".bin") for n in files)
    umask = os.umask(0)
    os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in tiny_trained.rglob("*") if p.is_file())
    config = AutoConfig.from_pretrained(tiny_trained)
    assert config.id2label == {0: "negative", 1: "positive"} and config.label2id["positive"] == 1
    meta = json.loads((tiny_trained / "bertfit.json").read_text())
    assert meta["labels"]["names"] == ["negative", "positive"]
    assert meta["config"]["train"]["epochs"] == TINY_TRAIN["epochs"] and meta["versions"]["torch"]
    metrics = json.loads((tiny_trained / "metrics.json").read_text())
    assert metrics["n"] == 80 and len(metrics["history"]) == TINY_TRAIN["epochs"]
    assert "Validation metrics" in (tiny_trained / "README.md").read_text()
    assert not list(tiny_trained.parent.glob(".*bertfit-work*"))


def test_model_folder_holds_the_training_logs(tiny_trained):
    log = [json.loads(line) for line in (tiny_trained / "training_log.jsonl").read_text().splitlines()]
    assert log[0]["step"] == 1 and "loss" in log[0] and log[0]["elapsed_s"] > 0
    evals = [e for e in log if "eval_macro_f1" in e]
    assert len(evals) == TINY_TRAIN["epochs"] and evals[-1]["epoch"] == TINY_TRAIN["epochs"]
    assert (tiny_trained / "training_curve.png").stat().st_size > 10_000
    if importlib.util.find_spec("tensorboard"):  # report_to auto: TensorBoard when installed
        assert list((tiny_trained / "tensorboard").glob("events.out.tfevents.*"))


def test_patience_stops_early_and_keeps_the_best(tiny_model_dir, tmp_path):
    data = sentiment_frame(96, seed=6)
    result = bertfit.train(
        data, tmp_path / "m", model=str(tiny_model_dir), progress=False, epochs=6, lr=1e-9, patience=1, batch_size=16
    )
    history = result.metrics["history"]
    assert len(history) == 2, "nothing improves after epoch 1, so patience 1 stops after epoch 2"
    assert result.metrics["macro_f1"] == pytest.approx(history[0]["eval_macro_f1"], abs=1e-6)


def test_training_learns_the_task(tiny_trained):
    metrics = json.loads((tiny_trained / "metrics.json").read_text())
    # The words decide the label; a model that learned nothing sits near 0.5.
    assert metrics["accuracy"] >= 0.9
    best = max(e["eval_macro_f1"] for e in metrics["history"])
    assert metrics["macro_f1"] == pytest.approx(best, abs=1e-6), "the best epoch must be the one restored"


def test_same_command_same_seed_gives_identical_metrics_and_weights(tiny_model_dir, tmp_path):
    """The reproducibility promise on CPU: run `bertfit train` twice (the second run reuses the token cache)."""
    from safetensors.numpy import load_file
    from typer.testing import CliRunner

    from bertfit.cli import app

    data = tmp_path / "train.csv"
    sentiment_frame(96, seed=5).to_csv(data, index=False)
    runs = []
    for name in ("a", "b"):
        args = ["train", str(data), "-o", str(tmp_path / name), "--model", str(tiny_model_dir), "--epochs", "2",
                "--lr", "3e-3", "--batch-size", "16", "--seed", "7", "--report-to", "none"]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        runs.append(tmp_path / name)

    def timeless(metrics: dict) -> dict:
        metrics["history"] = [{k: v for k, v in e.items() if "runtime" not in k and "per_second" not in k}
                              for e in metrics["history"]]  # fmt: skip
        return metrics

    first, second = (timeless(json.loads((run / "metrics.json").read_text())) for run in runs)
    assert first == second and len(first["history"]) == 2
    cal = [json.loads((run / "bertfit.json").read_text())["calibration"] for run in runs]
    assert cal[0] == cal[1]
    weights = [load_file(run / "model.safetensors") for run in runs]
    assert weights[0].keys() == weights[1].keys()
    assert all(np.array_equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_exponential_schedule_with_accumulation_follows_the_documented_rates(tiny_model_dir, tmp_path):
    # 320 rows, 8 per batch, 2 batches per step: 20 steps an epoch, 80 in all; warmup 0.1: 8 steps. The rate rises
    # linearly to its peak over the warmup steps, then falls by a constant factor per step, to 1% of the peak after
    # the last step. The log shows the rate each logged step used.
    train_df, val_df = sentiment_frame(320, 3), sentiment_frame(40, 4)
    peak, total, warmup = 3e-3, 80, 8
    result = bertfit.train(train_df, tmp_path / "m", validation=val_df, model=str(tiny_model_dir), progress=False,
                           scheduler="exponential", grad_accum=2, epochs=4, lr=peak, batch_size=8, warmup=0.1,
                           best_metric="loss")  # fmt: skip
    log = [json.loads(line) for line in (result.model_dir / "training_log.jsonl").read_text().splitlines()]
    rates = {e["step"]: e["learning_rate"] for e in log if "learning_rate" in e}
    assert max(rates) == total and len(rates) > 8

    def documented(step: int) -> float:
        if step <= warmup:
            return peak * step / warmup
        return peak * 0.01 ** ((step - 1 - warmup) / (total - warmup))

    assert rates == {step: pytest.approx(documented(step), rel=1e-6) for step in rates}
    assert rates[warmup] == pytest.approx(peak) and rates[total] == pytest.approx(peak * 0.01 ** (71 / 72))
    assert result.metrics["accuracy"] >= 0.8


def test_existing_bertfit_model_is_replaced_but_other_folders_are_kept(tiny_model_dir, tmp_path):
    data = sentiment_frame(40, seed=6)
    kwargs = dict(model=str(tiny_model_dir), progress=False, epochs=1)
    bertfit.train(data, tmp_path / "m", seed=1, **kwargs)
    (tmp_path / "m" / "marker.txt").write_text("the first run's folder")
    first = (tmp_path / "m" / "model.safetensors").read_bytes()
    bertfit.train(data, tmp_path / "m", seed=2, **kwargs)  # a bertfit model folder: replaced, whole
    assert not (tmp_path / "m" / "marker.txt").exists(), "the old folder is still there"
    assert (tmp_path / "m" / "model.safetensors").read_bytes() != first
    assert json.loads((tmp_path / "m" / "bertfit.json").read_text())["config"]["train"]["seed"] == 2
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match=r"notes: folder exists and is not a bertfit model \(it holds keep.txt\)"):
        bertfit.train(data, other, overwrite=True, **kwargs)
    assert (other / "keep.txt").read_text() == "mine" and sorted(p.name for p in other.iterdir()) == ["keep.txt"]


def test_validation_split_is_stratified_and_capped():
    labels = np.array([0] * 90 + [1] * 10)
    train, val = split_rows(labels, 0.2, max_rows=1000, seed=0, source="src")
    assert len(val) == 20 and len(train) == 80
    assert np.bincount(labels[val]).tolist() == [18, 2]
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(range(100))
    _, capped = split_rows(labels, 0.2, max_rows=10, seed=0, source="src")
    assert len(capped) == 10 and np.bincount(labels[capped]).tolist() == [9, 1]


def test_unseen_validation_label_names_training_file(tmp_path):
    train_df = sentiment_frame(20)
    val_df = sentiment_frame(20, seed=9).assign(label=["neutral"] * 20)  # other texts: no leakage found first
    with pytest.raises(DataError, match=r"validation: column 'label' has labels that the training data .* 'neutral'"):
        bertfit.train(train_df, tmp_path / "m", validation=val_df, progress=False)
    assert not (tmp_path / "m").exists()


def test_truncated_share_is_reported(tiny_model_dir, tmp_path, caplog):
    data = sentiment_frame(40, seed=8)
    with caplog.at_level("WARNING", logger="bertfit"):
        result = bertfit.train(data, tmp_path / "m", model=str(tiny_model_dir), progress=False, epochs=1, max_length=8)
    assert "are cut at max_length 8 tokens; raise --max-length" in caplog.text
    assert json.loads((result.model_dir / "bertfit.json").read_text())["data"]["max_length"] == 8


def test_a_failure_while_the_model_is_swapped_in_leaves_the_previous_model(tiny_model_dir, tmp_path, monkeypatch):
    data = sentiment_frame(40, seed=9)
    kwargs = dict(model=str(tiny_model_dir), progress=False, epochs=1)
    bertfit.train(data, tmp_path / "m", seed=1, **kwargs)
    before = folder_bytes(tmp_path / "m")
    rename = os.rename

    def disk_full(src, dst, *args, **kw):  # moving the new model into place fails; other renames work
        if Path(src).name == "model" and Path(src).parent.name.endswith(".bertfit-work"):
            raise OSError(28, "No space left on device")
        return rename(src, dst, *args, **kw)

    with monkeypatch.context() as m:
        # two renames: the old folder is moved away first
        m.setattr("bertfit.training.publish.exchange", lambda a, b: False)
        m.setattr("bertfit.training.publish.os.rename", disk_full)
        with pytest.raises(OSError, match="No space left"):
            bertfit.train(data, tmp_path / "m", seed=2, **kwargs)
        assert folder_bytes(tmp_path / "m") == before, "the old, complete model must be back in place"
        with pytest.raises(OSError, match="No space left"):
            bertfit.train(data, tmp_path / "new", seed=2, **kwargs)
        assert not (tmp_path / "new").exists()  # nothing that looks like a model appears

    bertfit.train(data, tmp_path / "m", seed=2, **kwargs)  # the next run finishes the job
    after = folder_bytes(tmp_path / "m")
    assert after["model.safetensors"] != before["model.safetensors"] and "bertfit.json" in after
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".m.")) == []


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_training_keeps_a_validation_sample_that_reproduces_its_metrics(tiny_trained):
    meta = json.loads((tiny_trained / "bertfit.json").read_text())
    assert meta["validation_sample"]["file"] == VALIDATION_SAMPLE and meta["validation_sample"]["rows"] == 80
    encoded, labels = read_validation_sample(tiny_trained)
    clf = bertfit.Classifier.from_pretrained(tiny_trained, dtype="fp32")
    logits = clf.scorer.logits(encoded, 4096, None)
    accuracy = float((logits.argmax(-1) == labels).mean())
    assert accuracy == pytest.approx(json.loads((tiny_trained / "metrics.json").read_text())["accuracy"])


def test_the_validation_sample_keeps_whole_documents_and_pairs(sliding_model, pair_model):
    encoded, labels = read_validation_sample(sliding_model.model_dir)
    assert len(labels) == 80 and encoded.docs is not None and len(encoded.lengths) > 80  # windows of 80 documents
    assert encoded.docs.max() == 79 and (np.diff(encoded.docs) >= 0).all()
    encoded, labels = read_validation_sample(pair_model)
    assert len(labels) == 80 and encoded.type_starts is not None and (encoded.type_starts < encoded.lengths).all()


def test_epochs_default_to_three_or_enough_for_500_steps_on_small_data(tiny_model_dir, tmp_path, caplog):
    """Without --epochs: 3 epochs, or on small data as many as reach MIN_STEPS optimizer steps (at most 30); the
    resolved number is what bertfit.json records. Given epochs are never changed."""
    from bertfit.config import default_epochs

    assert default_epochs(1000) == 3.0 and default_epochs(167) == 3.0  # 3 epochs already reach 500 steps
    assert default_epochs(29) == 18.0 and default_epochs(10) == 30.0  # 1,000 emotion rows; very small data: capped
    settings = {k: v for k, v in TINY_TRAIN.items() if k != "epochs"}
    small = sentiment_frame(160, seed=4)  # 144 training rows: 9 steps of 16 an epoch -> 56 epochs, capped at 30
    with caplog.at_level("INFO", logger="bertfit"):
        result = bertfit.train(small, tmp_path / "auto", model=str(tiny_model_dir), progress=False, max_steps=3,
                               **settings)  # fmt: skip
    meta = json.loads((result.model_dir / "bertfit.json").read_text())
    assert meta["config"]["train"]["epochs"] == 30.0
    assert "30 epochs of 9 optimizer steps (small data" in caplog.text
    given = bertfit.train(small, tmp_path / "given", model=str(tiny_model_dir), progress=False, max_steps=3,
                          **{**settings, "epochs": 2})  # fmt: skip
    assert json.loads((given.model_dir / "bertfit.json").read_text())["config"]["train"]["epochs"] == 2
