"""Training under torchrun: two CPU processes (gloo backend, DDP) train one model together, and an optimizer step over
16 rows is the same step whether the rows come as one batch of 16, as 2 accumulated batches of 8, or as a batch of 8
on each of 2 processes.

For the second, the same rows make each step in all three ways (the sampler cuts the shuffled rows into whole
optimizer steps, and accelerate deals a step's batches to the processes in turn) and the model has no dropout, so the
weights after a few steps, the logged training loss and the logged gradient norm must agree to float rounding."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import sentiment_frame
from test_multilabel import multilabel_frame

import bertfit

pytestmark = pytest.mark.slow  # torchrun: two processes that import torch and transformers, per launch


def test_two_process_training_with_torchrun(tiny_model_dir, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists() and not shutil.which("torchrun"):
        pytest.skip("torchrun is not installed")
    sentiment_frame(640, seed=8).to_parquet(tmp_path / "train.parquet")
    val = sentiment_frame(120, seed=9)
    val.to_parquet(tmp_path / "val.parquet")
    out = tmp_path / "model"
    # Time-based saves too: every process must save at the same step, or they wait for each other forever.
    cmd = [
        str(torchrun), "--nproc_per_node", "2", "--standalone", "-m", "bertfit", "--quiet", "train",
        str(tmp_path / "train.parquet"), "-o", str(out), "--validation", str(tmp_path / "val.parquet"),
        "--model", str(tiny_model_dir), "--epochs", "3", "--lr", "3e-3", "--batch-size", "16", "--warmup", "0",
        "--report-to", "none", "--save-every", "0.3s", "--json",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # PYTHONPATH passes on: the processes run this checkout
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)  # one report, from the first process
    assert summary["train_rows"] == 640 and summary["accuracy"] >= 0.9

    meta = json.loads((out / "bertfit.json").read_text())
    assert meta["processes"] == 2
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert max(e["step"] for e in log) == 3 * 640 // (16 * 2), "each step takes one batch from each process"
    # The logged loss is the mean over the step's 32 rows: ln 2 for a fresh two-class head (a loss taken as already
    # divided over both processes and then multiplied by 2 for DDP's gradient mean logged 2 ln 2).
    assert log[0]["step"] == 1 and log[0]["loss"] == pytest.approx(math.log(2), abs=0.03)
    clf = bertfit.Classifier.from_pretrained(out, dtype="fp32")
    predicted = [p["label"] for p in clf.predict(val.text.tolist())]
    assert sum(p == y for p, y in zip(predicted, val.label)) >= 0.9 * len(val)


STEPS = 3  # 64 training rows, 16 per step: 4 steps per epoch, so every step is logged
# fp32: the three ways add the same numbers in a different order, which agrees to float rounding in fp32; on a CPU
# with AMX, precision auto trains in bf16, where the same reordering moved the gradient norm by 1e-3 and the weights
# by 1.5e-3 after three steps (measured on a Xeon with AMX, 2026-12-02)
SETTINGS = {"lr": 3e-3, "warmup": 0.0, "seed": 7, "max_steps": STEPS, "report_to": "none", "precision": "fp32"}


def imbalanced_frame(n: int, seed: int) -> pd.DataFrame:
    """Three negatives to each positive, so class weights change the loss."""
    frame = sentiment_frame(2 * n, seed)
    return pd.concat([frame[frame.label == "negative"][: n * 3 // 4], frame[frame.label == "positive"][: n // 4]])


KINDS = {
    "plain": (lambda n, seed: sentiment_frame(n, seed), {}),
    "class-weighted": (imbalanced_frame, {"class_weights": "auto"}),
    "multi-label": (multilabel_frame, {"label_col": "labels"}),
}


@dataclass
class Run:
    weights: dict[str, np.ndarray]
    log: list[dict]

    def steps(self, key: str) -> list[float]:
        return [e[key] for e in self.log if "loss" in e]  # the per-step lines ('train_loss' is the run's mean)


@pytest.fixture(scope="module")
def still_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT without dropout: dropout masks are drawn per batch, so they differ between the three ways."""
    folder = tmp_path_factory.mktemp("still-bert")
    shutil.copytree(tiny_model_dir, folder, dirs_exist_ok=True)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def data_files(kind: str, folder: Path) -> tuple[Path, Path]:
    make, _ = KINDS[kind]
    train, val = folder / "train.parquet", folder / "val.parquet"
    make(64, 1).to_parquet(train)
    make(32, 2).to_parquet(val)
    return train, val


def read_run(out: Path) -> Run:
    from safetensors.numpy import load_file

    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    return Run(load_file(out / "model.safetensors"), log)


def job(kind: str, model: Path, folder: Path, out: str, batch: int, accum: int) -> dict:
    """bertfit.train's arguments for one way of making the steps."""
    train, val = data_files(kind, folder)
    return {"data": str(train), "output_dir": str(folder / out), "validation": str(val), "model": str(model),
            "batch_size": batch, "grad_accum": accum, **SETTINGS, **KINDS[kind][1]}  # fmt: skip


@pytest.fixture(scope="module")
def ddp_runs(still_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each kind trained with a batch of 8 on each of 2 processes, all in one torchrun launch (tests/torchrun_jobs.py),
    so that the two processes start once, not once per kind."""
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun is not installed")
    folders = {kind: tmp_path_factory.mktemp(f"ddp-{kind}") for kind in KINDS}
    jobs = [job(kind, still_model_dir, folder, "model-ddp", batch=8, accum=1) for kind, folder in folders.items()]
    spec = tmp_path_factory.mktemp("ddp-jobs") / "jobs.json"
    spec.write_text(json.dumps(jobs))
    cmd = [str(torchrun), "--nproc_per_node", "2", "--standalone", str(Path(__file__).with_name("torchrun_jobs.py")),
           str(spec)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # PYTHONPATH passes on: the processes run this checkout
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {kind: folder / "model-ddp" for kind, folder in folders.items()}


def in_process(kind: str, model: Path, folder: Path, batch: int, accum: int) -> Run:
    settings = job(kind, model, folder, f"model-{batch}x{accum}", batch, accum)
    bertfit.train(settings.pop("data"), settings.pop("output_dir"), progress=False, **settings)
    return read_run(folder / f"model-{batch}x{accum}")


def start_loss(kind: str, folder: Path) -> float:
    """The loss of a fresh model, by hand: its head starts near 0 (random weights of scale 0.02), so each row costs
    ln 2 under two softmax classes; multi-label heads start at each label's base rate (bias = log-odds), so each
    label costs its base rate's binary entropy. Class weights averaging 1 over the training rows leave ln 2 as the
    mean over an epoch, not over one batch, so that kind is checked only against the other two ways."""
    if kind == "multi-label":
        rates = pd.read_parquet(folder / "train.parquet")["labels"].map(lambda s: ["negative" in s, "positive" in s])
        p = np.clip(np.array(rates.tolist(), dtype=float).mean(0), 1e-4, 1 - 1e-4)
        return float(np.mean(-p * np.log(p) - (1 - p) * np.log(1 - p)))
    return math.log(2)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_batch_accumulated_batches_and_two_processes_take_the_same_steps(kind, still_model_dir, ddp_runs, tmp_path):
    whole = in_process(kind, still_model_dir, tmp_path, batch=16, accum=1)
    accumulated = in_process(kind, still_model_dir, tmp_path, batch=8, accum=2)
    ddp = read_run(ddp_runs[kind])
    assert json.loads((ddp_runs[kind] / "bertfit.json").read_text())["processes"] == 2

    losses = {name: run.steps("loss") for name, run in (("16", whole), ("8x2", accumulated), ("2x8", ddp))}
    norms = {name: run.steps("grad_norm") for name, run in (("16", whole), ("8x2", accumulated), ("2x8", ddp))}
    print(f"{kind}: losses {losses}\n{kind}: gradient norms {norms}")
    assert len(losses["16"]) == STEPS
    if kind != "class-weighted":
        assert losses["16"][0] == pytest.approx(start_loss(kind, tmp_path), abs=0.02)
    for name in ("8x2", "2x8"):
        assert losses[name] == pytest.approx(losses["16"], rel=1e-4), f"logged loss, {name} against one batch of 16"
        assert norms[name] == pytest.approx(norms["16"], rel=1e-3), f"gradient norm, {name} against one batch of 16"
    for name, run in (("8x2", accumulated), ("2x8", ddp)):
        assert run.weights.keys() == whole.weights.keys()
        moved = max(float(np.abs(whole.weights[k] - run.weights[k]).max()) for k in whole.weights)
        print(f"{kind}: largest weight difference, {name} against one batch of 16: {moved:.2e}")
        assert moved < 1e-5, f"weights after {STEPS} steps, {name} against one batch of 16"
