"""`--dtype auto` on a CPU, by measurement: the first time a model scores on a machine, time it in fp32 and in bf16
on the rows at hand, keep the fastest that gives the same top label as fp32 on >= 99.5% of them, and remember the
choice per (machine, model, engine) in the bertfit cache ($BERTFIT_CACHE or ~/.cache/bertfit, `dtype.json`).
The first SETTLE_AFTER loads each measure again and decide on the median speed-up of all their measurements, so one
timing taken while something else loaded the CPU does not stick (it did: fp32 was remembered for a model that runs
2x faster in bf16); from then on the choice is read, not measured.

The CPU's name decides nothing: bf16 runs ~2x fp32 on an AMX Xeon and ~1.6x on an AVX512-BF16 EPYC, and is emulated
on CPUs without either (0.11x fp32 on an AVX2 EPYC: x86 CPUs whose flags show neither get fp32 unmeasured); a small
model may gain nothing. Measuring takes a second or two, once.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertfit.data.cache import cache_root
from bertfit.modeling import cpu_emulates_bf16, cpu_flags

logger = logging.getLogger(__name__)

CHOICES_FILE = "dtype.json"
MIN_AGREEMENT = 0.995  # top labels that must agree with fp32
MIN_SPEEDUP = 1.05  # a lower precision must beat fp32 by more than timing noise
TIMED_ROWS = 128  # rows timed per precision: the first rows at hand (repeated when fewer) ...
TIMED_TOKENS = 4096  # ... up to this many tokens: ~0.1-0.3 s of a 6-layer model per precision on 2 cores
CANDIDATES = ("fp32", "bf16")
SETTLE_AFTER = 3  # measurements (one per load) before a choice is only read: the median of three outvotes one


@dataclass
class Trial:
    """One precision timed on the sample: seconds for it, and the share of rows whose top label matches fp32."""

    dtype: str
    seconds: float
    agreement: float


def choose(trials: list[Trial]) -> Trial:
    """The fastest trial that agrees with fp32 (the first trial) on >= MIN_AGREEMENT of the rows and beats fp32 by
    MIN_SPEEDUP; fp32 when none does."""
    baseline = trials[0]
    good = [t for t in trials[1:] if t.agreement >= MIN_AGREEMENT and baseline.seconds / t.seconds >= MIN_SPEEDUP]
    return min(good, key=lambda t: t.seconds) if good else baseline


def machine() -> dict[str, Any]:
    """What makes a timing hold for this machine: the CPU, its bf16/int8 flags and torch. Not the thread count: the
    ratio of bf16 to fp32 is a property of each core, and every process on the machine (Ray actors, torchrun
    workers) should make the same choice for a model."""
    name = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            name = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), name)
    except OSError:
        pass
    flags = sorted(cpu_flags() & {"avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8"})
    return {"cpu": name, "flags": flags, "torch": torch.__version__}


def choice_key(model: dict[str, Any], engine: str = "torch") -> str:
    """The cache key of a (machine, model, engine): a hash of the machine, the model's files (names, sizes, times;
    not the folder's path, so a copy keeps its choice) and the engine."""
    files = model.get("weights")
    text = json.dumps({"machine": machine(), "model": files, "engine": engine}, sort_keys=True, default=str)
    return sha256(text.encode()).hexdigest()[:24]


def read_choices(name: str = CHOICES_FILE) -> dict[str, Any]:
    """The choices remembered in the cache file `name` (dtype.json, engine.json), {} when none can be read."""
    try:
        choices = json.loads((cache_root() / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return choices if isinstance(choices, dict) else {}


def settled(entry: Any) -> str | None:
    """The dtype an entry of dtype.json settled on (after SETTLE_AFTER measurements), or None."""
    if not isinstance(entry, dict) or entry.get("dtype") not in CANDIDATES:
        return None
    return entry["dtype"] if len(past_measurements(entry)) >= SETTLE_AFTER else None


def past_measurements(entry: Any) -> list[list[Trial]]:
    """The measurements an entry of dtype.json records (an entry from before SETTLE_AFTER: its one `trials`)."""
    if not isinstance(entry, dict):
        return []
    runs = entry.get("measurements") or ([entry["trials"]] if entry.get("trials") else [])
    try:
        return [[Trial(**t) for t in run] for run in runs]
    except TypeError:  # an entry written in another form: measure afresh
        return []


def median_trials(measurements: list[list[Trial]]) -> list[Trial]:
    """One trial per precision over several measurements: its median time relative to fp32's in the same
    measurement (a loaded CPU slows both) and its lowest agreement."""
    first = measurements[0]
    merged = [Trial(first[0].dtype, 1.0, 1.0)]
    for i, trial in enumerate(first[1:], start=1):
        ratios = [run[i].seconds / run[0].seconds for run in measurements]
        merged.append(Trial(trial.dtype, float(np.median(ratios)), min(run[i].agreement for run in measurements)))
    return merged


def write_choice(key: str, entry: dict[str, Any], name: str = CHOICES_FILE) -> Path | None:
    """Add one entry to the cache file `name` (written whole under a temporary name, then renamed); None if the
    cache cannot be written (the choice then holds for this process only)."""
    path = cache_root() / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        choices = read_choices(name)
        choices[key] = {**entry, "machine": machine(), "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(choices, fh, indent=1)
        os.replace(tmp, path)
    except OSError as exc:
        logger.debug("could not remember the choice in %s: %s", path, exc)
        return None
    return path


def remember(
    key: str, chosen: Trial, trials: list[Trial], model: dict[str, Any], earlier: list[list[Trial]] = ()
) -> Path | None:
    """Add the dtype choice to dtype.json, with this measurement (`trials`) after the `earlier` ones; None if the
    cache cannot be written."""
    runs = [[asdict(t) for t in run] for run in [*earlier, trials]]
    entry = {"dtype": chosen.dtype, "trials": runs[-1], "measurements": runs, "model": model.get("folder")}
    return write_choice(key, entry)


def timed_sample(lengths: np.ndarray) -> np.ndarray:
    """Row indices to time: the first rows (wrapping around when there are few) up to TIMED_ROWS rows or
    TIMED_TOKENS tokens, whichever comes first."""
    if not len(lengths):
        return np.arange(0)
    order = np.resize(np.arange(len(lengths)), max(len(lengths), TIMED_ROWS))
    within = int(np.searchsorted(np.cumsum(lengths[order]), TIMED_TOKENS)) + 1
    return order[: min(TIMED_ROWS, within)]


def decisions(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """What agreement is counted on: the top label of each row, or for multi-label models each label's on/off
    decision at 0.5 (a logit above 0) - a 28-label model has many near-ties for its top label that decide nothing."""
    return logits > 0 if multi_label else logits.argmax(axis=1)


def measure(
    run: Callable[[np.ndarray], np.ndarray], cast: Callable[..., None], lengths: np.ndarray, multi_label: bool = False
) -> list[Trial]:
    """Each candidate precision timed on the sample, with its agreement with fp32 on the sample's distinct rows.
    `run(indices)` gives logits; `cast(dtype, final=False)` converts the model (a trial cast keeps what it needs to
    come back to fp32 exactly; the final one need not). Each precision runs the sample once untimed:
    oneDNN builds its bf16 kernels for each new batch shape on first use (measured: a cold bf16 pass over the sample
    was slower than fp32 on an AVX512-BF16 EPYC, where a warm one is 1.7x faster). fp32 alone on a CPU that
    emulates bf16 (an engine choice still times torch fp32 against OpenVINO)."""
    sample = timed_sample(lengths)
    distinct = sample[: min(len(lengths), len(sample))]
    trials, reference = [], None
    for dtype in CANDIDATES[:1] if cpu_emulates_bf16() else CANDIDATES:  # emulated bf16 is not worth a timing
        cast(dtype)
        seconds, logits = time_run(run, sample)
        top = decisions(logits[: len(distinct)], multi_label)
        reference = top if reference is None else reference
        trials.append(Trial(dtype, seconds, float(np.mean(top == reference))))
    return trials


def time_run(run: Callable[[np.ndarray], np.ndarray], sample: np.ndarray) -> tuple[float, np.ndarray]:
    """(seconds, logits) of `run(sample)` after one untimed warm-up pass with the same batch shapes."""
    run(sample)
    start = time.perf_counter()
    logits = run(sample)
    return time.perf_counter() - start, logits


def decide(
    run: Callable[[np.ndarray], np.ndarray],
    cast: Callable[..., None],
    lengths: np.ndarray,
    model: dict[str, Any] | None,
    multi_label: bool = False,
) -> str:
    """The dtype to score with, from the cache or measured now (and then cached when the model has an identity):
    until SETTLE_AFTER measurements are recorded, each load measures again and the median of all decides. The
    model is cast to it. One log line says what was chosen and why. On an x86 CPU without AVX512-BF16 or AMX
    nothing is measured: bf16 is emulated there (0.11x fp32 on an AVX2 EPYC), and timing it cost the first three
    loads ~18 s each."""
    if cpu_emulates_bf16():
        cast("fp32", final=True)
        logger.info("dtype auto: fp32 (this CPU has no AVX512-BF16 or AMX, so bf16 would be emulated; not measured)")
        return "fp32"
    key = choice_key(model) if model else None
    entry = read_choices().get(key) if key else None
    known = settled(entry)
    if known:
        cast(known, final=True)
        logger.info("dtype auto: %s (measured earlier on this machine for this model)", known)
        return known
    earlier = past_measurements(entry)
    trials = measure(run, cast, lengths, multi_label)
    measurements = [*earlier, trials]
    chosen = choose(median_trials(measurements))
    cast(chosen.dtype, final=True)
    where = remember(key, chosen, trials, model, earlier) if key else None
    speed = ", ".join(f"{t.dtype} {trials[0].seconds / t.seconds:.2f}x (agrees {t.agreement:.1%})" for t in trials[1:])
    progress = f"; measurement {len(measurements)} of {SETTLE_AFTER}, the median decides" if where else ""
    logger.info("dtype auto: %s, timed on %d rows against fp32: %s%s%s", chosen.dtype, len(timed_sample(lengths)),
                speed, progress, f"; remembered in {where}" if where else "")  # fmt: skip
    return chosen.dtype
