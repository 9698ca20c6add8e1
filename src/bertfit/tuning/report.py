"""What `bertfit tune` writes besides tune.db: trials.csv (every trial), trials.png (the objective per trial with the
running best, pruned trials marked) and best.yaml (the best trial's whole configuration, for `bertfit train
--config`). Each is rewritten after every trial, under a temporary name and then renamed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from bertfit.config import RunConfig
from bertfit.data.write import atomic_path, write_table
from bertfit.plots import new_figure

if TYPE_CHECKING:  # optuna is optional (bertfit[tune]); this module reads trials by their state's name
    from optuna.trial import FrozenTrial

DB_FILE, TRIALS_CSV, TRIALS_PNG, BEST_YAML = "tune.db", "trials.csv", "trials.png", "best.yaml"
TRIALS_DIR, BEST_MODEL = "trials", "best-model"  # each trial's scratch folder is in OUT/trials
OUTPUTS = (DB_FILE, TRIALS_CSV, TRIALS_PNG, BEST_YAML, TRIALS_DIR, BEST_MODEL)
COUNTED = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}  # by state; RUNNING, WAITING when found


@dataclass
class TuneResult:
    """What tune() found and wrote: the best trial (None before any trial completed), every trial as trials.csv
    holds it, and the files."""

    output_dir: Path
    metric: str
    best_value: float | None
    best_trial: int | None
    best_params: dict[str, Any]
    best_config: Path | None  # best.yaml
    best_model: Path | None  # OUT/best-model, with keep_best
    trials: pd.DataFrame
    seconds: float  # this call's

    @property
    def counts(self) -> dict[str, int]:
        """Trials by state: complete, pruned, failed (and running or waiting ones, which only an error leaves)."""
        found = self.trials["state"].value_counts()
        counts = {name: int(found.get(state, 0)) for state, name in COUNTED.items()}
        counts.update({state.lower(): int(n) for state, n in found.items() if state not in COUNTED})
        return counts

    def summary(self) -> dict[str, Any]:
        """Plain JSON: what `bertfit tune --json` prints."""
        return {
            "output_dir": str(self.output_dir),
            "metric": self.metric,
            "best_value": self.best_value,
            "best_trial": self.best_trial,
            "best_params": self.best_params,
            "trials": self.counts,
            "seconds": round(self.seconds, 1),
            "trial_seconds": round(float(self.trials["duration_s"].fillna(0).sum()), 1),
            "best_config": str(self.best_config) if self.best_config else None,
            "best_model": str(self.best_model) if self.best_model else None,
            "trials_csv": str(self.output_dir / TRIALS_CSV),
            "trials_png": str(self.output_dir / TRIALS_PNG),
        }


def trials_frame(trials: list[FrozenTrial], names: list[str]) -> pd.DataFrame:
    """One row per trial: number, state, value (complete trials), epochs_run (epochs scored before it ended),
    epoch_values (the metric after each epoch, as JSON), duration_s, one column per searched setting, retry_of
    (the trial whose settings it ran again) and when it started."""
    rows = []
    for t in trials:
        epochs = [t.intermediate_values[k] for k in sorted(t.intermediate_values)]
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value if t.state.name == "COMPLETE" else None,
                "epochs_run": len(epochs),
                "epoch_values": json.dumps([round(v, 6) for v in epochs]),
                "duration_s": round(t.duration.total_seconds(), 1) if t.duration is not None else None,
                **{name: t.params.get(name) for name in names},
                "retry_of": t.user_attrs.get("retry_of"),
                "started": t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
            }
        )
    columns = ["number", "state", "value", "epochs_run", "epoch_values", "duration_s", *names, "retry_of", "started"]
    return pd.DataFrame(rows, columns=columns)


def write_trials(frame: pd.DataFrame, out: Path) -> Path:
    path = out / TRIALS_CSV
    write_table(frame, path)
    return path


def plot_trials(trials: list[FrozenTrial], path: Path, metric: str, minimize: bool) -> None:
    """trials.png: each complete trial's value, each pruned trial's last epoch value (marked x), the running best."""
    from matplotlib.ticker import MaxNLocator

    complete = [(t.number, t.value) for t in trials if t.state.name == "COMPLETE"]
    pruned = [(t.number, t.intermediate_values[max(t.intermediate_values)]) for t in trials
              if t.state.name == "PRUNED" and t.intermediate_values]  # fmt: skip
    fig = new_figure(7, 4.5, layout="tight")
    ax = fig.subplots()
    if complete:
        ax.scatter(*zip(*complete), s=28, color="C0", label="complete", zorder=3)
        best, running = [], None
        for number, value in complete:
            running = value if running is None else (min if minimize else max)(running, value)
            best.append((number, running))
        ax.step(*zip(*best), where="post", color="C1", label="best so far")
    if pruned:
        ax.scatter(*zip(*pruned), marker="x", s=36, color="0.5", label="pruned (last epoch's value)", zorder=3)
    failed = sum(t.state.name == "FAIL" for t in trials)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"bertfit tune: {len(complete)} complete, {len(pruned)} pruned, {failed} failed")
    ax.grid(True, alpha=0.3)
    if complete or pruned:
        ax.legend(loc="lower right" if not minimize else "upper right")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def write_best_config(cfg: RunConfig, path: Path, header: list[str]) -> None:
    """best.yaml: the trial's whole RunConfig (data, model and train sections, resolved values), after `header`
    as comment lines."""
    text = "".join(f"# {line}\n" for line in header)
    text += yaml.safe_dump(_plain(cfg.to_dict()), sort_keys=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _plain(value: Any) -> Any:
    """Python values YAML writes plainly (numpy numbers from a sampler become floats and ints)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
