"""Training is a function of its settings: the same seed, data and torch threads give bit-identical weights however
loaded the machine is, whichever steps a time-based --save-every lands on, and whether the token caches were built
or reused. (The thread count itself is a setting: 1 and 2 threads give different bits, as any BLAS does.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_TRAIN
from safetensors.torch import load_file

import bertfit
from bertfit.training.checkpoints import CommitCheckpoints

HOG = "while True: pass"


def test_same_seed_gives_bit_identical_weights_beside_cpu_hogs(
    tiny_model_dir: Path, sentiment_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, val = sentiment_data
    saves: list[list[int]] = []
    commit = CommitCheckpoints.on_save

    def record(self, args, state, control, **kw):  # the steps a checkpoint was written at, for the message
        saves[-1].append(state.global_step)
        return commit(self, args, state, control, **kw)

    monkeypatch.setattr(CommitCheckpoints, "on_save", record)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # two torch threads contend with two busy processes for the cores
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(2)]
    try:
        for run in ("a", "b"):  # "a" builds the token and check caches, "b" reuses them
            saves.append([])
            bertfit.train(train, tmp_path / run, validation=val, model=str(tiny_model_dir), progress=False,
                          max_steps=10, save_every="0.1s", **TINY_TRAIN)  # fmt: skip
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        torch.set_num_threads(threads)

    a, b = (load_file(tmp_path / run / "model.safetensors") for run in ("a", "b"))
    base = load_file(tiny_model_dir / "model.safetensors")
    assert sorted(a) == sorted(b) and len(a) == len(base) + 2  # the encoder plus the new classifier head
    moved = [name for name in base if not torch.equal(a[f"bert.{name}"], base[name])]
    assert len(moved) > len(base) // 2, "training changed the weights: the comparison below is of trained weights"
    differing = [name for name in a if a[name].numpy().tobytes() != b[name].numpy().tobytes()]
    assert differing == [], f"{len(differing)} of {len(a)} tensors differ; checkpoints at steps {saves}"
