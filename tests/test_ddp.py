"""The same `bertfit train` under torchrun: two CPU processes (gloo backend, DDP) train one model together."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import sentiment_frame

import bertfit


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
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)  # one report, from the first process
    assert summary["train_rows"] == 640 and summary["accuracy"] >= 0.9

    meta = json.loads((out / "bertfit.json").read_text())
    assert meta["processes"] == 2
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert max(e["step"] for e in log) == 3 * 640 // (16 * 2), "each step takes one batch from each process"
    clf = bertfit.Classifier.from_pretrained(out, dtype="fp32")
    predicted = [p["label"] for p in clf.predict(val.text.tolist())]
    assert sum(p == y for p, y in zip(predicted, val.label)) >= 0.9 * len(val)
