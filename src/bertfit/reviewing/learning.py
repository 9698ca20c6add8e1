"""learning_curve(): train on growing, nested, stratified subsets of the data and forecast what more labels buy.

For each seed the rows of each class are shuffled once; the subset at fraction f takes the first round(f * rows)
of every class (at least one), so the 25% subset holds the 12.5% one and the class shares stay those of the full
data. Fractions below 0.5 run with every seed (their scores scatter most), the others with the first. Each subset
is trained with `bertfit.train` (the given settings; the seed is the subset's) and scored on the validation data
with `bertfit.evaluate`; the models are deleted as soon as they are scored. The scores are fitted by a power law
(`review.curve`) and forecast at the full size and at twice it.

curve.json is rewritten after every run with the runs so far and the settings; a later call with the same data,
validation data and settings reuses the runs it holds (an interrupted call continues, and adding a fraction or a
seed trains only the new runs).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from bertfit.config import RunConfig
from bertfit.data.paths import check_not_input
from bertfit.data.rows import DataSource, load_frame
from bertfit.data.write import check_folder_writable, write_json
from bertfit.errors import ConfigError, DataError
from bertfit.reviewing.curve import fit_curve, plot_curve, power_law

logger = logging.getLogger(__name__)

DEFAULT_FRACTIONS = (0.125, 0.25, 0.5, 1.0)
METRICS = ("macro_f1", "accuracy")
SMALL = 0.5  # fractions below this run with every seed
MISFIT = 0.05  # the fit may miss the largest runs' mean score by this much before a warning


def learning_curve(
    data: DataSource,
    validation: DataSource,
    output_dir: str | Path,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: int = 3,
    metric: str = "macro_f1",
    config: RunConfig | None = None,
    progress: bool = False,
    keep_models: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """Train on growing subsets of `data`, score each model on `validation`, fit a learning curve and forecast.

    Args:
        data: labelled training data (a table file, a folder of shards, or a DataFrame).
        validation: labelled data every model is scored on (and picks its best epoch on).
        output_dir: the folder that receives curve.json (every run's scores, the fit, the forecasts) and curve.png.
        fractions: shares of the training rows, each in (0, 1].
        seeds: seeds per fraction below 0.5 (fractions from 0.5 up run once).
        metric: what the curve fits: "macro_f1" or "accuracy" (both are recorded for every run).
        config: a RunConfig; keyword overrides such as `epochs=2` or `model="..."` apply on top (as in `train`).
        keep_models: keep each run's model folder under output_dir/runs/ (deleted by default: they are large).

    Returns curve.json's content; `answer` says "at N more labels, expect <metric> between a and b".
    """
    fractions = _check_arguments(fractions, seeds, metric)
    cfg = (config or RunConfig()).override(overrides).validate()
    output_dir = Path(output_dir)
    check_not_input(output_dir, [data, validation], "output folder", writes=("curve.json", "curve.png", "runs"))
    frame, source = load_frame(data, "training data", cfg.data.read_options)
    groups = _groups(frame, cfg, source)
    output_dir.mkdir(parents=True, exist_ok=True)
    check_folder_writable(output_dir / "curve.json")
    runs = [(f, s) for f in fractions for s in range(seeds if f < SMALL else 1)]
    settings = {"data": _identity(data, frame), "validation": _identity(validation, None), "config": cfg.to_dict()}
    done = _done_points(output_dir / "curve.json", settings)
    points = []
    with tqdm(total=len(runs), desc="learning curve", unit=" runs", disable=not progress, file=sys.stderr) as bar:
        for fraction, seed in runs:
            point = done.get((fraction, seed)) or _run(frame, groups, fraction, seed, validation, cfg, output_dir,
                                                       keep_models, progress, not points)  # fmt: skip
            points.append(point)
            bar.update(1)
            if len(points) < len(runs):  # what is done so far, fitted where it can be: a rerun continues from it
                write_json({**summarize(points, len(frame), metric), "settings": settings, "complete": False},
                           output_dir / "curve.json")  # fmt: skip
    result = {**summarize(points, len(frame), metric), "settings": settings, "complete": True}
    write_json(result, output_dir / "curve.json")
    plot_curve(result, output_dir / "curve.png", metric)
    logger.info("%s", result["answer"])
    return result


def summarize(points: list[dict[str, Any]], full_rows: int, metric: str = "macro_f1") -> dict[str, Any]:
    """curve.json's content from the runs' points: the fit of `metric`, forecasts at the full size and twice it."""
    targets = [full_rows, 2 * full_rows]
    fit = fit_curve([p["train_rows"] for p in points], [p[metric] for p in points], targets)
    result = {"metric": metric, "full_rows": full_rows, "points": points, "fit": fit, "answer": _answer(fit, metric)}
    warning = _misfit(points, fit, metric)
    if warning:
        logger.warning("%s", warning)
        result["warning"] = warning
    return result


def _misfit(points: list[dict[str, Any]], fit: dict[str, Any] | None, metric: str) -> str | None:
    """A warning when the fit misses the largest runs' mean score by more than MISFIT (the curve is not a power
    law over these sizes: typically the smallest runs did not learn at all)."""
    if fit is None:
        return None
    largest = max(p["train_rows"] for p in points)
    observed = float(np.mean([p[metric] for p in points if p["train_rows"] == largest]))
    fitted = float(power_law(largest, fit["a"], fit["b"], fit["c"]))
    if abs(observed - fitted) <= MISFIT:
        return None
    return (f"the fit gives {fitted:.3f} at {largest} rows where the runs scored {observed:.3f}: the scores do not "
            "follow a power law over these sizes (did the smallest runs learn? try more epochs or larger "
            "fractions); read the forecast as rough")  # fmt: skip


def nested_subset(groups: list[np.ndarray], fraction: float, seed: int) -> np.ndarray:
    """Row positions of the `fraction` subset for `seed`: the first round(fraction * size) rows (at least one)
    of each group after one seeded shuffle per group, so a larger fraction's subset holds a smaller one's."""
    rng = np.random.default_rng(seed)
    picked = []
    for rows in groups:
        shuffled = rng.permutation(rows)
        picked.append(shuffled[: max(1, int(round(fraction * len(rows))))])
    return np.sort(np.concatenate(picked))


def _run(
    frame: pd.DataFrame, groups: list[np.ndarray], fraction: float, seed: int, validation: DataSource,
    cfg: RunConfig, output_dir: Path, keep: bool, progress: bool, check: bool,
) -> dict[str, Any]:  # fmt: skip
    """Train one subset, score it on the validation data: its point on the curve (`check`: run the data checks,
    done on the first run only: every subset's rows are the full data's)."""
    from bertfit.evaluation.evaluate import evaluate
    from bertfit.training.run import train

    subset = frame.iloc[nested_subset(groups, fraction, seed)].reset_index(drop=True)
    model_dir = output_dir / "runs" / f"fraction-{fraction:g}-seed-{seed}"
    model_dir.parent.mkdir(exist_ok=True)
    started = time.perf_counter()
    train(subset, model_dir, validation=validation, config=cfg, progress=progress, resume=False, check=check,
          seed=cfg.train.seed + seed)  # fmt: skip
    scores = evaluate(model_dir, validation, text_cols=cfg.data.text_cols, label_col=cfg.data.label_col,
                      read=cfg.data.read_options)  # fmt: skip
    if not keep:
        shutil.rmtree(model_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            model_dir.parent.rmdir()  # the runs folder, once empty
    point = {"fraction": fraction, "seed": seed, "train_rows": len(subset),
             **{m: float(scores[m]) for m in METRICS}, "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    logger.info("fraction %g, seed %d: %d rows, macro-F1 %.4f", fraction, seed, len(subset), point["macro_f1"])
    return point


def _identity(source: DataSource, frame: pd.DataFrame | None) -> Any:
    """What identifies an input for reusing earlier runs: its files' paths, sizes and times, or a table's hash."""
    if isinstance(source, pd.DataFrame):
        return int(pd.util.hash_pandas_object(source, index=False).sum() % 2**62)
    from bertfit.data.io import data_files
    from bertfit.data.paths import input_fingerprint

    return input_fingerprint(data_files(source))


def _done_points(path: Path, settings: dict[str, Any]) -> dict[tuple[float, int], dict[str, Any]]:
    """The runs an earlier call with the same inputs and settings recorded in curve.json, by (fraction, seed)."""
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(earlier, dict) or earlier.get("settings") != json.loads(json.dumps(settings)):
        return {}
    points = {(float(p["fraction"]), int(p["seed"])): p for p in earlier.get("points", [])}
    if points:
        logger.warning("%s: reusing %d runs recorded by an earlier call with the same data and settings", path,
                       len(points))  # fmt: skip
    return points


def _groups(frame: pd.DataFrame, cfg: RunConfig, source: str) -> list[np.ndarray]:
    """Row positions per label value (the strata); multi-label data: one group (label sets are too many)."""
    label_col = cfg.data.label_col
    if label_col not in frame.columns:
        found = ", ".join(f"'{c}'" for c in frame.columns[:8])
        raise DataError(f"{source}: no column '{label_col}' (found: {found}); pass --label-col NAME")
    if cfg.data.is_multi_label:
        return [np.arange(len(frame))]
    keys = frame[label_col].astype(str).to_numpy()
    return [np.flatnonzero(keys == k) for k in sorted(set(keys))]


def _answer(fit: dict[str, Any] | None, metric: str) -> str:
    if fit is None:
        return "no forecast: give 3 or more fractions that train on different numbers of rows"
    full, double = fit["forecasts"][0], fit["forecasts"][1]
    more = double["train_rows"] - full["train_rows"]
    if double["low"] is None:
        return f"at {more} more labels ({double['train_rows']} in all), expect {metric} near {double['expected']:.3f}"
    return (f"at {more} more labels ({double['train_rows']} in all), expect {metric} between {double['low']:.3f} and "
            f"{double['high']:.3f} ({fit['band']:.0%} band; {full['expected']:.3f} at the current "
            f"{full['train_rows']})")  # fmt: skip


def _check_arguments(fractions: Sequence[float], seeds: int, metric: str) -> list[float]:
    fractions = sorted(set(float(f) for f in fractions))
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise ConfigError(f"--fractions must be shares in (0, 1], e.g. 0.125,0.25,0.5,1 (got {fractions})")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1 (got {seeds}); try 3")
    if metric not in METRICS:
        raise ConfigError(f"--metric must be one of {', '.join(METRICS)} (got '{metric}')")
    return fractions
