"""Publishing a model: a process killed (SIGKILL) at any step of putting the new folder in place leaves a complete
model at the output path (the old or the new one, byte for byte), and the next run finishes the job and trains."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import sentiment_frame

import bertfit
from bertfit.training.checkpoints import complete_checkpoints
from bertfit.training.publish import CRASH_HOOK, exchange, recover

KWARGS = dict(epochs=2, lr=3e-3, batch_size=16, seed=2, precision="fp32", report_to="tensorboard", progress=False)


class Stop(Exception):
    pass


def work_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.bertfit-work"


def digest(folder: Path) -> dict[str, str]:
    """Every file under a model folder by its bytes' hash: equal digests are the same, complete model."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def staged(tiny_model_dir, tmp_path_factory) -> dict:
    """An old model at base/model, and the work folder of a run that stopped with its new model staged, unpublished."""
    base = tmp_path_factory.mktemp("publish")
    data = base / "train.csv"
    sentiment_frame(64, seed=9).to_csv(data, index=False)
    kwargs = dict(model=str(tiny_model_dir), **KWARGS)
    bertfit.train(data, base / "model", **{**kwargs, "seed": 1})
    old = digest(base / "model")

    def stop(work: Path, output_dir: Path) -> None:
        raise Stop

    with pytest.MonkeyPatch.context() as m:
        m.setattr("bertfit.training.run.publish", stop)
        with pytest.raises(Stop):
            bertfit.train(data, base / "model", **kwargs)
    assert digest(base / "model") == old
    new = digest(work_dir(base / "model") / "model")
    assert new["model.safetensors"] != old["model.safetensors"] and "bertfit.json" in new
    return {"base": base, "data": data, "kwargs": kwargs, "old": old, "new": new}


def case_from(staged: dict, folder: Path) -> Path:
    out = folder / "model"
    shutil.copytree(staged["base"] / "model", out)
    shutil.copytree(work_dir(staged["base"] / "model"), work_dir(out))
    return out


# (step the process is killed at, whether renameat2's exchange is disabled, what the output then holds)
STEPS = [
    ("staged", False, "old"),  # the new folder complete, no journal yet
    ("journal", False, "old"),  # the journal written, nothing swapped
    ("swapped", False, "new"),  # exchanged: the old model is in the work folder
    ("old-removed", False, "new"),  # the old model removed, the rest of the work folder not yet
    ("moved-old", True, None),  # two renames: the old folder moved away, the new one not yet in
    ("swapped", True, "new"),  # two renames: both done, the old model still in the work folder
]


@pytest.mark.parametrize(("step", "two_renames", "holds"), STEPS, ids=[f"{s}-{'rename' if r else 'exchange'}"
                                                                       for s, r, _ in STEPS])  # fmt: skip
def test_a_kill_at_each_publish_step_leaves_a_complete_model(staged, tmp_path, caplog, step, two_renames, holds):
    out = case_from(staged, tmp_path)
    work = work_dir(out)
    patch = "p.exchange = lambda a, b: False; " if two_renames else ""
    code = f"import sys, pathlib, bertfit.training.publish as p; {patch}p.publish(*map(pathlib.Path, sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, str(work), str(out)], env={**os.environ, CRASH_HOOK: step})
    assert done.returncode == -signal.SIGKILL, "the publish was not killed at this step"

    if holds is None:  # the only state without a model at the output; the old one is whole in the work folder
        assert not out.exists() and digest(work / "old") == staged["old"]
    else:
        assert digest(out) == staged[holds], f"the output does not hold the complete {holds} model"

    with caplog.at_level(logging.INFO, logger="bertfit"):
        result = bertfit.train(staged["data"], out, **staged["kwargs"])
    recovered = [r.getMessage() for r in caplog.records if r.name == "bertfit.training.publish"]
    if step == "staged":  # no journal: a staged folder might be partial; it goes, and the run continues instead
        assert result.resumed_from_step is not None and any("not finished writing" in m for m in recovered)
    else:
        assert any("interrupted run" in m for m in recovered), recovered
    final = digest(out)
    assert final["model.safetensors"] == staged["new"]["model.safetensors"] and "bertfit.json" in final
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "the publish left something behind"


def test_the_real_command_killed_while_publishing_is_finished_by_the_next_run(staged, tmp_path):
    out = case_from(staged, tmp_path)
    shutil.rmtree(work_dir(out))  # this time the command trains, then is killed with its model staged
    script = Path(sys.executable).parent / "bertfit"
    cmd = [str(script), "--quiet", "train", str(staged["data"]), "-o", str(out), "--model", staged["kwargs"]["model"],
           "--epochs", "2", "--lr", "3e-3", "--batch-size", "16", "--seed", "2", "--precision", "fp32"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", CRASH_HOOK: "journal"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert digest(out) == staged["old"]
    new = digest(work_dir(out) / "model")

    kwargs = {**staged["kwargs"], "report_to": "auto"}  # the command's settings
    assert bertfit.train(staged["data"], out, **kwargs).resumed_from_step is None  # the finished run is published
    assert digest(out)["model.safetensors"] == new["model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_half_copied_staged_folder_does_not_stop_the_next_run(staged, tmp_path):
    """Killed after the TensorBoard files were copied into the staged folder and before bertfit.json was written:
    the next run used to fail on every try with FileExistsError."""
    out = case_from(staged, tmp_path)
    work = work_dir(out)
    assert (work / "model" / "tensorboard").is_dir()
    (work / "model" / "bertfit.json").unlink()
    last = int(complete_checkpoints(work / "checkpoints")[-1].name.split("-")[1])
    result = bertfit.train(staged["data"], out, **staged["kwargs"])
    assert result.resumed_from_step == last
    assert digest(out)["model.safetensors"] == staged["new"]["model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def fake_model(folder: Path, marker: str) -> Path:
    folder.mkdir()
    for name in ("bertfit.json", "config.json"):
        (folder / name).write_text("{}", encoding="utf-8")
    (folder / "marker").write_text(marker, encoding="utf-8")
    return folder


def test_exchange_swaps_two_folders_in_one_step(tmp_path):
    a, b = fake_model(tmp_path / "a", "A"), fake_model(tmp_path / "b", "B")
    inodes = (a.stat().st_ino, b.stat().st_ino)
    if not exchange(a, b):
        pytest.skip("this system or file system has no renameat2(RENAME_EXCHANGE); the two-rename path is used")
    assert (a / "marker").read_text() == "B" and (b / "marker").read_text() == "A"
    assert (b.stat().st_ino, a.stat().st_ino) == inodes


def test_an_old_model_moved_aside_by_an_earlier_version_is_put_back(tmp_path):
    out = tmp_path / "model"
    fake_model(tmp_path / ".model.old-4242", "old")  # killed between its two renames: no model at the output
    recover(work_dir(out), out)
    assert (out / "marker").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]

    fake_model(tmp_path / ".model.old-4343", "older")  # with a model at the output, the leftover is removed
    recover(work_dir(out), out)
    assert (out / "marker").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
