"""Learning-curve fits: score(n) = a - b * n^(-c), its uncertainty band, forecasts and the plot.

The fit is scipy's bounded least squares (`curve_fit`) on every run's score (several seeds at a size are several
points). The band is where one more training run at that size is expected to score (a prediction band, not the band
of the mean curve): a residual bootstrap (the fitted curve plus the residuals drawn again with replacement,
refitted `BOOTSTRAP` times), each refit's forecast plus the new run's own seed-to-seed scatter (the residuals' scale
with 3 degrees of freedom taken by the fit, drawn from Student's t); the central `BAND` share of those. The band of
the mean curve alone missed a measured run: fitted on 2,000 to 8,000 emotion rows it gave 0.881-0.908 at 16,000
rows, where the run scored 0.909; this band gives 0.871-0.918 (docs/benchmarks.md). In simulations like that one
(7 runs at 3 sizes, noise 0.01, forecast at twice the largest size) it held 75% of new runs rather than 90%: with
so few points read it as the spread of the runs, not a promise.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from bertfit.plots import new_figure

logger = logging.getLogger(__name__)

BOOTSTRAP = 300
BAND = 0.9
GRID = 60  # sizes the plotted band is computed at
BOUNDS = ([0.0, 0.0, 1e-3], [1.0, np.inf, 3.0])  # a: a score's ceiling, b >= 0: rising, c: a sane exponent


def power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """a - b * n^(-c): a score that rises with the training size n towards the ceiling a."""
    return a - b * np.power(n, -c)


def fit_power_law(sizes: np.ndarray, scores: np.ndarray) -> tuple[float, float, float] | None:
    """(a, b, c) of the least-squares fit within BOUNDS, or None when it does not converge.

    Sizes are scaled by their largest before fitting (b is huge in raw units: well-conditioned this way)."""
    from scipy.optimize import curve_fit

    sizes, scores = np.asarray(sizes, np.float64), np.asarray(scores, np.float64)
    scale = float(sizes.max())
    p0 = (min(float(scores.max()) + 0.01, 1.0), max(float(scores.max() - scores.min()), 0.01), 0.5)
    try:
        (a, b_scaled, c), _ = curve_fit(power_law, sizes / scale, scores, p0=p0, bounds=BOUNDS, maxfev=20_000)
    except (RuntimeError, ValueError):
        return None
    return float(a), float(b_scaled * scale**c), float(c)  # b in raw units: b_scaled * (n/scale)^-c == b * n^-c


def fit_curve(sizes: list[int], scores: list[float], targets: list[int], seed: int = 0) -> dict[str, Any] | None:
    """The fit, its error, each target size's forecast with a BAND band, and the band along a grid of sizes from
    the smallest to the largest target (for the plot); None with fewer than 3 sizes or when the fit fails."""
    n, y = np.asarray(sizes, np.float64), np.asarray(scores, np.float64)
    if len(np.unique(n)) < 3:
        logger.warning("a power law needs scores at 3 or more training sizes (got %d); no fit", len(np.unique(n)))
        return None
    params = fit_power_law(n, y)
    if params is None:
        logger.warning("the power-law fit did not converge; no forecast")
        return None
    fitted = power_law(n, *params)
    grid = np.unique(np.geomspace(n.min(), max(targets), GRID).round())
    at = np.concatenate([np.asarray(targets, np.float64), grid])
    expected = power_law(at, *params)
    draws = _bootstrap(n, fitted, y - fitted, at, seed)
    if len(draws):  # the band always holds the fit itself
        low, high = np.quantile(draws, [(1 - BAND) / 2, (1 + BAND) / 2], axis=0)
        low, high = np.minimum(low, expected), np.maximum(high, expected)
    else:
        low = high = np.full(len(at), np.nan)
    k = len(targets)
    forecasts = [{"train_rows": int(t), "expected": float(expected[i]), "low": _number(low[i]),
                  "high": _number(high[i])} for i, t in enumerate(targets)]  # fmt: skip
    a, b, c = params
    rmse = float(np.sqrt(np.mean((y - fitted) ** 2)))
    return {"formula": "score = a - b * n^(-c)", "a": a, "b": b, "c": c, "rmse": rmse, "band": BAND,
            "bootstrap": len(draws), "forecasts": forecasts,
            "band_curve": {"train_rows": grid.astype(int).tolist(), "low": [_number(v) for v in low[k:]],
                           "high": [_number(v) for v in high[k:]]}}  # fmt: skip


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _bootstrap(n: np.ndarray, fitted: np.ndarray, residuals: np.ndarray, at: np.ndarray, seed: int) -> np.ndarray:
    """Scores of one new run at each size of `at`, drawn (refits that converged, len(at)): a refit on the fitted
    curve plus resampled residuals, plus the run's own scatter (Student's t with the residuals' scale and degrees
    of freedom, 3 taken by the fit)."""
    rng = np.random.default_rng(seed)
    dof = max(1, len(residuals) - 3)
    sigma = float(np.sqrt(np.sum(residuals**2) / dof))
    rows = []
    for _ in range(BOOTSTRAP):
        params = fit_power_law(n, fitted + rng.choice(residuals, size=len(residuals), replace=True))
        if params is not None:
            rows.append(power_law(at, *params) + sigma * rng.standard_t(dof))
    return np.asarray(rows)


def plot_curve(result: dict[str, Any], path: Path, metric: str) -> None:
    """curve.png: every run's score, the mean per size, the fitted curve and its band out to the last forecast."""
    from bertfit.data.write import atomic_path

    sizes = [p["train_rows"] for p in result["points"]]
    scores = [p[metric] for p in result["points"]]
    fig = new_figure(7, 4.5, layout="tight")
    ax = fig.subplots()
    ax.scatter(sizes, scores, s=18, alpha=0.6, label="runs")
    means = {s: np.mean([y for x, y in zip(sizes, scores) if x == s]) for s in sorted(set(sizes))}
    ax.plot(list(means), list(means.values()), "o-", color="C0", label="mean per size")
    fit = result.get("fit")
    if fit:
        last = max(f["train_rows"] for f in fit["forecasts"])
        grid = np.geomspace(min(sizes), last, 100)
        ax.plot(grid, power_law(grid, fit["a"], fit["b"], fit["c"]), "--", color="C1", label="power-law fit")
        band = fit["band_curve"]
        if None not in band["low"]:
            ax.fill_between(band["train_rows"], band["low"], band["high"], color="C1", alpha=0.2,
                            label=f"{fit['band']:.0%} band")  # fmt: skip
        for f in (f for f in fit["forecasts"] if f["low"] is not None):
            below, above = f["expected"] - f["low"], f["high"] - f["expected"]
            ax.errorbar([f["train_rows"]], [f["expected"]], yerr=[[below], [above]], fmt="s", color="C3", capsize=4)
    ax.set_xscale("log")
    ax.set_xlabel("training rows")
    ax.set_ylabel(metric)
    ax.set_title(f"Learning curve ({metric} on the validation data)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
