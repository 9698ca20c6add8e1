"""`bertfit tune`: an Optuna study of tiny trials writes tune.db, trials.csv, trials.png and a best.yaml that `train`
reproduces; a killed tune continues to exactly the trials asked for; pruning stops a trial's training; given settings
are never searched; bad requests are one-line errors."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest
from conftest import sentiment_frame
from typer.testing import CliRunner

import bertfit
from bertfit.cli import app
from bertfit.config import TrainConfig, load_config
from bertfit.errors import ConfigError, DataError
from bertfit.tuning.space import default_values, epochs_range, fixed_names, search_space

optuna = pytest.importorskip("optuna", reason="bertfit tune needs: pip install 'bertfit[tune]'")

pytestmark = pytest.mark.usefixtures("restore_cli_state")
# the tiny random BERT learns only at a high learning rate; fp32 so that no CPU kind changes the scores
RANGES = {"lr": (1e-3, 1e-2), "epochs": (2, 3)}
FIXED = {"batch_size": 16, "precision": "fp32", "report_to": "none"}


def load(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="bertfit-tune", storage=f"sqlite:///{out / 'tune.db'}")


@pytest.fixture(scope="module")
def tuned(tiny_model_dir: Path, sentiment_data, tmp_path_factory: pytest.TempPathFactory):
    train_df, val_df = sentiment_data
    out = tmp_path_factory.mktemp("tune") / "study"
    result = bertfit.tune(train_df, out, validation=val_df, trials=4, ranges=RANGES, model=str(tiny_model_dir),
                          progress=False, **FIXED)  # fmt: skip
    return result, out


def test_the_best_trial_is_written_and_train_reproduces_it(tuned, tiny_model_dir, sentiment_data, tmp_path) -> None:
    result, out = tuned
    assert sorted(p.name for p in out.iterdir()) == [".tune.lock", "best.yaml", "trials.csv", "trials.png", "tune.db"]
    assert (out / "trials.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(out / "trials.csv")
    assert list(table["number"]) == [0, 1, 2, 3] and set(table["state"]) == {"COMPLETE"}
    assert table["value"].nunique() > 1, "every trial scored the same: reproducing that would prove nothing"
    assert (
        result.best_value == table["value"].max() and result.best_trial == table.loc[table["value"].idxmax(), "number"]
    )
    assert result.counts == {"complete": 4, "pruned": 0, "failed": 0}

    best = load_config(out / "best.yaml")
    assert best.train.lr == result.best_params["lr"] and best.train.epochs == result.best_params["epochs"]
    assert best.model.model == str(tiny_model_dir) and best.train.batch_size == 16 and best.train.precision == "fp32"
    train_df, val_df = sentiment_data
    again = bertfit.train(train_df, tmp_path / "model", validation=val_df, config=best, progress=False)
    assert again.metrics["macro_f1"] == pytest.approx(result.best_value, abs=1e-9)


def test_a_given_setting_is_not_searched(tuned) -> None:
    result, out = tuned
    study = load(out)
    searched = {"lr", "epochs", "warmup", "weight_decay", "scheduler", "class_weights", "layer_decay",
                "reinit_layers", "label_smoothing"}  # fmt: skip
    assert all(set(t.params) == searched for t in study.trials)
    assert all(1e-3 <= t.params["lr"] <= 1e-2 and t.params["epochs"] in (2, 3) for t in study.trials)
    assert study.user_attrs["bertfit_settings"]["batch_size"] == 16
    # trial 0 is train's defaults where the ranges hold them (not lr and epochs here: RANGES leaves them out)
    first = study.trials[0]
    assert first.user_attrs.get("defaults") is True and not any(t.user_attrs.get("defaults") for t in study.trials[1:])
    assert {k: first.params[k] for k in searched - {"lr", "epochs"}} == {
        "warmup": 0.1, "weight_decay": 0.01, "scheduler": "linear", "class_weights": "none", "layer_decay": 1.0,
        "reinit_layers": 0, "label_smoothing": 0.0}  # fmt: skip
    assert "batch_size" not in pd.read_csv(out / "trials.csv").columns


def test_a_rerun_runs_nothing_more_and_other_data_is_refused(tuned, tiny_model_dir, sentiment_data, monkeypatch):
    result, out = tuned
    train_df, val_df = sentiment_data

    def no_training(*args, **kwargs):
        raise AssertionError("a finished study trained again")

    monkeypatch.setattr("bertfit.tuning.search.train", no_training)
    settings = {**FIXED, "model": str(tiny_model_dir), "progress": False, "ranges": RANGES}
    again = bertfit.tune(train_df, out, validation=val_df, trials=4, **settings)
    assert again.best_trial == result.best_trial and again.best_params == result.best_params
    with pytest.raises(DataError, match="other data; run the same command"):
        bertfit.tune(train_df.iloc[:200], out, validation=val_df, trials=5, **settings)
    with pytest.raises(DataError, match="other settings"):
        bertfit.tune(train_df, out, validation=val_df, trials=5, **{**settings, "max_length": 64})
    assert len(load(out).trials) == 4


def test_a_pruned_trial_stops_training_at_once(tiny_model_dir, sentiment_data, tmp_path) -> None:
    train_df, val_df = sentiment_data
    out = tmp_path / "pruned"
    every_trial = optuna.pruners.ThresholdPruner(lower=2.0)  # macro-F1 never reaches 2: pruned at the first report
    matplotlib = pytest.importorskip("matplotlib")
    backend = matplotlib.get_backend()
    matplotlib.use("svg")  # a user's own backend (a notebook's inline one): drawing trials.png must not switch it
    try:
        result = bertfit.tune(train_df, out, validation=val_df, trials=2, ranges={"epochs": (3, 4)}, pruner=every_trial,
                              model=str(tiny_model_dir), lr=3e-3, progress=False, **FIXED)  # fmt: skip
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(backend)
    table = pd.read_csv(out / "trials.csv")
    assert list(table["state"]) == ["PRUNED", "PRUNED"]
    assert list(table["epochs_run"]) == [1, 1] and (table["epochs"] >= 3).all()  # training stopped after epoch 1
    assert result.best_value is None and result.counts["pruned"] == 2
    assert not (out / "best.yaml").exists() and (out / "trials.png").is_file()
    assert not (out / "trials").exists(), "a pruned trial's checkpoints were left behind"


SEARCHED_BY_CLI = 8  # tune_cmd fixes epochs and weight decay: lr, batch size, warmup, scheduler, class weights,
# layer decay, reinit layers, label smoothing


def trial_states(db: Path) -> tuple[list[str], list[int]]:
    """Each trial's state and how many of its settings are drawn, read-only: an optuna storage opened here while the
    tune process creates the database races it to write the schema version (UNIQUE constraint failed:
    alembic_version.version_num)."""
    query = ("SELECT t.state, COUNT(p.param_id) FROM trials t LEFT JOIN trial_params p ON p.trial_id = t.trial_id "
             "GROUP BY t.trial_id ORDER BY t.number")  # fmt: skip
    if not db.is_file():
        return [], []
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
            rows = con.execute(query).fetchall()
    except sqlite3.OperationalError:  # no tables yet, or the file is still being created
        return [], []
    return [state for state, _ in rows], [n for _, n in rows]


def tune_cmd(data: Path, val: Path, out: Path, model: Path) -> list[str]:
    return [
        "tune", str(data), "--validation", str(val), "-o", str(out), "--trials", "3", "--model", str(model),
        "--epochs", "2", "--precision", "fp32", "--report-to", "none", "--seed", "3", "--json",
        "--set", "train.weight_decay=0.01",  # the default value, named: held fixed all the same
    ]  # fmt: skip


def test_a_killed_tune_continues_to_exactly_the_trials_asked_for(tiny_model_dir, tmp_path) -> None:
    data, val, out = tmp_path / "train.csv", tmp_path / "val.csv", tmp_path / "tune"
    sentiment_frame(320, seed=1).to_csv(data, index=False)
    sentiment_frame(80, seed=2).to_csv(val, index=False)
    cmd = tune_cmd(data, val, out, tiny_model_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "bertfit", *cmd], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline, states = time.time() + 120, []
    while proc.poll() is None and time.time() < deadline:
        states, params = trial_states(out / "tune.db")
        if states == ["COMPLETE", "RUNNING"] and params[1] == SEARCHED_BY_CLI:  # its settings drawn: in training
            break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert states == ["COMPLETE", "RUNNING"], f"not killed inside the second trial: {states}"
    first = load(out).trials[0]

    result = CliRunner().invoke(app, cmd)
    assert result.exit_code == 0, result.output
    assert "trial 1 was left running by a run that stopped (killed?); marked failed" in result.output
    summary = json.loads(result.stdout)
    study = load(out)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3 and summary["trials"]["complete"] + summary["trials"]["pruned"] == 3
    assert (study.trials[0].params, study.trials[0].value) == (first.params, first.value)
    assert study.trials[1].state.name == "FAIL" and not [t for t in study.trials if t.state.name == "RUNNING"]
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == 1]
    assert len(retry) == 1 and retry[0].params == study.trials[1].params and retry[0].state.name == "COMPLETE"
    assert all("weight_decay" not in t.params and "epochs" not in t.params for t in study.trials)
    assert not (out / "trials").exists()  # the killed trial's scratch is gone
    assert load_config(out / "best.yaml").train.weight_decay == 0.01


def test_cli_refuses_a_request_it_cannot_serve_in_one_line(tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "d.csv"
    sentiment_frame(20).to_csv(data, index=False)
    cases = [
        ([], "--validation FILE"),
        (["--validation", str(data), "--time-budget", "2x"], "--time-budget"),
        (["--validation", str(data), "--time-budget", "500"], "--time-budget"),  # steps are no time
        (["--validation", str(data), "--trials", "0"], "--trials"),
    ]
    for extra, named in cases:
        result = CliRunner().invoke(app, ["tune", str(data), "-o", str(tmp_path / "out"), *extra])
        assert result.exit_code == 2 and named in result.output and "Traceback" not in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed
    result = CliRunner().invoke(app, ["tune", str(data), "--validation", str(data), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "pip install 'bertfit[tune]'" in result.output
    assert not (tmp_path / "out").exists()


def test_a_one_trial_tune_is_train_at_its_defaults(tiny_model_dir, sentiment_data, tmp_path) -> None:
    """Trial 0 runs train's defaults for what is searched, so the best trial can only be as good or better."""
    train_df, val_df = sentiment_data
    given = {"model": str(tiny_model_dir), "lr": 3e-3, "epochs": 4, "progress": False, **FIXED}
    tuned = bertfit.tune(train_df, tmp_path / "t", validation=val_df, trials=1, **given)
    plain = bertfit.train(train_df, tmp_path / "m", validation=val_df, **given)
    assert tuned.best_value == plain.metrics["macro_f1"] and tuned.best_value > 0.7  # it learned, and identically


def test_the_first_trial_holds_what_train_would_use_on_this_data() -> None:
    space = search_space(bertfit.RunConfig(), set(), 16_000)
    assert default_values(space, TrainConfig(), 16_000) == {  # 500 steps an epoch: 3 epochs, 1,500 steps: 2e-4
        "lr": 2e-4, "epochs": 3, "batch_size": 32, "warmup": 0.1, "weight_decay": 0.01, "scheduler": "linear",
        "class_weights": "none", "layer_decay": 1.0, "reinit_layers": 0, "label_smoothing": 0.0}  # fmt: skip
    assert default_values(space, TrainConfig(), 64_000)["lr"] == 1e-4  # 6,000 steps: the long-run rate
    small = search_space(bertfit.RunConfig(), set(), 1_000)
    assert default_values(small, TrainConfig(), 1_000)["epochs"] == 16  # 32 steps an epoch: 16 reach 500 steps
    narrow = search_space(bertfit.RunConfig(), {"batch_size"}, 1_000, {"lr": (1e-3, 1e-2)})
    assert "lr" not in default_values(narrow, TrainConfig(batch_size=16), 1_000)  # 2e-4 is outside the range


def test_the_search_space_leaves_out_given_settings_and_grows_epochs_on_small_data() -> None:
    assert epochs_range(TrainConfig(), 16_000) == (2, 5) and epochs_range(TrainConfig(), None) == (2, 5)
    assert epochs_range(TrainConfig(), 1_000) == (2, 16)  # 32 steps an epoch: 16 epochs reach 500 steps
    cfg = bertfit.RunConfig().override({"lr": 1e-4, "warmup": 0.1})
    fixed = fixed_names(cfg, {"lr": 1e-4}, ["train.warmup"])  # warmup: the default, but named
    assert fixed == {"lr", "warmup"}
    assert [p.name for p in search_space(cfg, fixed, 1000, {"batch_size": [8]})] == [
        "epochs", "batch_size", "weight_decay", "scheduler", "class_weights", "layer_decay", "reinit_layers",
        "label_smoothing"]  # fmt: skip
    with pytest.raises(ConfigError, match="every setting tune searches is fixed"):
        search_space(cfg, set(TrainConfig.__dataclass_fields__), None)
    with pytest.raises(ConfigError, match="scheduler"):
        search_space(cfg, set(), None, {"scheduler": ["cosine"]})


def test_a_best_model_a_kill_left_half_replaced_goes_back_in_place(tmp_path) -> None:
    """Killed between _move_model's two renames: the earlier best model waits under .best-model.old and nothing is
    at best-model; the next run puts it back. With both there, the old one is the leftover and goes."""
    from bertfit.tuning.search import _clear_scratch

    old = tmp_path / ".best-model.old"
    old.mkdir()
    (old / "model.safetensors").write_text("the earlier best")
    _clear_scratch(tmp_path)
    assert (tmp_path / "best-model" / "model.safetensors").read_text() == "the earlier best" and not old.exists()
    old.mkdir()
    _clear_scratch(tmp_path)
    assert not old.exists() and (tmp_path / "best-model" / "model.safetensors").is_file()
