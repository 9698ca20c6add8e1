"""`--engine auto` on a torch model folder, by measurement: torch, or the same model converted to OpenVINO in this
process, whichever is faster here while giving torch fp32's labels.

The first rows scored time torch in fp32 and bf16 (as `dtype_choice` does, on the same sample) and the model
converted by `openvino.convert_model` in OpenVINO's own precision (bf16 on CPUs with AVX512-BF16 or AMX, fp32
elsewhere). OpenVINO is kept when it agrees with torch fp32 on >= 99.5% of the sample and beats the torch choice by
>= 5%; else torch in its measured dtype. Agreement is counted on the first AGREEMENT_ROWS rows (1,000), not the
128 timed: on 128 rows 99.5% allows no flip at all, and a bf16 engine flips a near-tie in ~1 row of 700 (MiniLM on
emotion tweets: 127 of 128 agreed). The choice is remembered per (machine, model files, OpenVINO version) in
the bertfit cache (`engine.json`, beside `dtype.json`), and a chosen OpenVINO model is kept there too
(`openvino/KEY/openvino_model.xml`), so a later run loads it in about a second instead of converting. Nothing is
written into the model folder.

When a conversion is tried (the rule): when the first rows the model scores are at least CONVERT_MIN_ROWS. That is
the first window of a file job (`bertfit predict`, `predict_file`, `predict_stream`, Ray actors: windows of 50,000
rows by default, so any input of 5,000 rows or more) or a `predict`/`predict_proba` call (hence `evaluate`) of that
many texts. Converting costs ~3 s and compiling ~1.3 s for MiniLM-L6 on 2 EPYC cores (4-11 s for the tiny test
BERT or MiniLM when those cores are shared), about what torch takes for 5,000 tweets, and the choice then holds for
every later run. Smaller jobs (a 10-text predict(), a server's requests, a 3,000-row file) never convert: they use
OpenVINO only when a larger job measured it faster for this model on this machine, else torch. An explicit engine
or dtype is obeyed: nothing is measured.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertfit.data.cache import cache_root
from bertfit.data.formats import first_line
from bertfit.errors import ModelError
from bertfit.prediction import dtype_choice
from bertfit.prediction.dtype_choice import MIN_AGREEMENT, MIN_SPEEDUP, choice_key, decisions, timed_sample
from bertfit.prediction.engines import OpenVinoForward
from bertfit.prediction.scorer import Scorer
from bertfit.tokenization import Encoded

logger = logging.getLogger(__name__)

CHOICES_FILE = "engine.json"
IR_FOLDER = "openvino"
IR_FILE = "openvino_model.xml"
CONVERT_MIN_ROWS = 5_000  # rows scored at once (token windows) from which converting is worth its seconds
AGREEMENT_ROWS = 1_000  # rows OpenVINO's labels are checked on: at 128, one flipped near-tie is 99.2% (< 99.5%)


@dataclass
class EngineTrial:
    """One engine timed on the sample, in its precision, with its agreement with torch fp32."""

    engine: str
    dtype: str
    seconds: float
    agreement: float


def openvino_version() -> str | None:
    """The installed OpenVINO's version, None when it is not installed (auto then means torch)."""
    if find_spec("openvino") is None:
        return None
    try:
        return version("openvino")
    except PackageNotFoundError:
        return "unknown"


def engine_key(identity: dict[str, Any], ov_version: str) -> str:
    """The cache key of a choice: the machine, the model's files and the OpenVINO version (`dtype_choice`)."""
    return choice_key(identity, engine=f"auto: torch or openvino {ov_version}")


def cached_engine(key: str) -> str | None:
    """The engine chosen earlier for this key (torch or openvino), or None."""
    entry = dtype_choice.read_choices(CHOICES_FILE).get(key)
    return entry.get("engine") if isinstance(entry, dict) and entry.get("engine") in ("torch", "openvino") else None


def settle_engine(scorer: Scorer, encoded: Encoded, batch_tokens: int, batch_size: int | None) -> bool:
    """Settle the engine and dtype of an auto scorer: True when done here (OpenVINO remembered, or both engines
    measured now), False when the torch dtype is still to settle (`Scorer.settle_dtype`)."""
    ov_version = openvino_version()
    if ov_version is None or not scorer.identity:
        return False
    key = engine_key(scorer.identity, ov_version)
    known = cached_engine(key)
    if known == "openvino":
        try:
            forward, where = remembered_openvino(scorer, encoded, key)
        except Exception as err:  # the cached model gone and this one no longer converts: torch, as measured next
            logger.info("engine auto: torch (OpenVINO, chosen earlier, could not convert it: %s)", first_line(err))
            return False
        use_openvino(scorer, forward)
        logger.info("engine auto: openvino %s (measured earlier on this machine for this model; OpenVINO model %s)",
                    forward.precision, where)  # fmt: skip
        return True
    if known == "torch" or len(encoded.lengths) < CONVERT_MIN_ROWS:
        return False
    measure_engines(scorer, encoded, batch_tokens, batch_size, key)
    return True


def measure_engines(scorer: Scorer, encoded: Encoded, batch_tokens: int, batch_size: int | None, key: str) -> None:
    """Time torch fp32 and bf16 and OpenVINO on the dtype sample, keep the fastest that agrees, remember it; one
    log line. The torch dtype choice is remembered in dtype.json as `dtype_choice` would."""

    def run(rows: np.ndarray) -> np.ndarray:
        return scorer.rows_logits(encoded, rows, batch_tokens, batch_size)

    cast, sample = scorer.caster(), timed_sample(encoded.lengths)
    torch_trials = dtype_choice.measure(run, cast, encoded.lengths, scorer.multi_label)
    torch_choice = dtype_choice.choose(torch_trials)
    cast("fp32")  # exactly the fp32 weights again: the reference labels and what is converted
    checked = np.arange(min(len(encoded.lengths), AGREEMENT_ROWS))
    reference = decisions(run(checked), scorer.multi_label)
    trials = [EngineTrial("torch", t.dtype, t.seconds, t.agreement) for t in torch_trials]
    started = time.perf_counter()
    try:
        ov_model = convert(scorer, encoded)
        forward = OpenVinoForward(ov_model, torch.get_num_threads(), None)
    except Exception as err:  # a model OpenVINO cannot trace or compile: torch it is
        ov_model = forward = None
        failure = f"OpenVINO could not convert it: {first_line(err)}"
    converted = time.perf_counter() - started
    if forward is not None:
        trials.append(openvino_trial(scorer, forward, run, sample, checked, reference))
    best = pick(trials, torch_choice.dtype)
    dtype_choice.remember(choice_key(scorer.identity), torch_choice, torch_trials, scorer.identity)
    kept = keep_ir(ov_model, key) if best.engine == "openvino" else None
    where = remember_engine(key, best, trials, scorer.identity)
    if best.engine == "openvino":
        use_openvino(scorer, forward)
    else:
        cast(best.dtype, final=True)
        scorer.dtype = best.dtype
    speed = ", ".join(f"{t.engine} {t.dtype} {trials[0].seconds / t.seconds:.2f}x (agrees {t.agreement:.1%})"
                      for t in trials[1:])  # fmt: skip
    notes = [f"converted and compiled in {converted:.1f} s" if forward is not None else failure]
    notes += [f"OpenVINO model kept in {kept}"] if kept else []
    notes += [f"remembered in {where}"] if where else []
    logger.info("engine auto: %s %s, timed on %d rows against torch fp32 (OpenVINO's labels checked on %d): %s; %s",
                best.engine, best.dtype, len(sample), len(checked), speed, "; ".join(notes))  # fmt: skip


def pick(trials: list[EngineTrial], torch_dtype: str) -> EngineTrial:
    """OpenVINO when it agrees with torch fp32 on >= MIN_AGREEMENT of the rows and beats torch in its chosen dtype
    by MIN_SPEEDUP; else torch in that dtype."""
    torch_best = next(t for t in trials if t.engine == "torch" and t.dtype == torch_dtype)
    ov = [t for t in trials if t.engine == "openvino"]
    if ov and ov[0].agreement >= MIN_AGREEMENT and torch_best.seconds / ov[0].seconds >= MIN_SPEEDUP:
        return ov[0]
    return torch_best


def openvino_trial(
    scorer: Scorer, forward: Any, run: Any, sample: np.ndarray, checked: np.ndarray, reference: np.ndarray
) -> EngineTrial:
    """OpenVINO timed on the sample through the scorer's own batching, and its agreement with torch fp32 (the
    `reference` decisions of the `checked` rows)."""
    torch_forward, scorer.forward = scorer.forward, forward
    try:
        seconds, _ = dtype_choice.time_run(run, sample)
        agreement = float(np.mean(decisions(run(checked), scorer.multi_label) == reference))
    finally:
        scorer.forward = torch_forward
    return EngineTrial("openvino", forward.precision, seconds, agreement)


def convert(scorer: Scorer, encoded: Encoded) -> Any:
    """The scorer's fp32 torch model as an openvino.Model, traced with a batch of the rows at hand (so a pair
    model's converted form takes token_type_ids)."""
    from bertfit.prediction.engines import to_openvino  # the converter `bertfit export` uses too

    starts = None if encoded.type_starts is None else encoded.type_starts[:2]
    example = scorer.encoder.pad(encoded.ids[:2], encoded.lengths[:2], starts)
    return to_openvino(scorer.model, example)


def use_openvino(scorer: Scorer, forward: OpenVinoForward) -> None:
    """From now on the scorer's batches run on OpenVINO. The torch model stays loaded (fp32) for explain()."""
    scorer.forward, scorer.engine, scorer.dtype = forward, "openvino", forward.precision


def remembered_openvino(scorer: Scorer, encoded: Encoded, key: str) -> tuple[OpenVinoForward, str]:
    """The OpenVINO engine of a remembered choice: its model from the cache, or converted again (and kept) when
    the cached one is gone or unreadable; and where it came from, for the log line."""
    path = cache_root() / IR_FOLDER / key / IR_FILE
    if path.is_file():
        try:
            return OpenVinoForward(path, torch.get_num_threads(), None), f"loaded from {path.parent}"
        except ModelError:
            logger.debug("%s: unreadable; converting the model again", path)
    ov_model = convert(scorer, encoded)
    kept = keep_ir(ov_model, key)
    return OpenVinoForward(ov_model, torch.get_num_threads(), None), f"converted again, kept in {kept}"


def keep_ir(ov_model: Any, key: str) -> Path | None:
    """Save the converted model under the cache (written in a temporary folder, then renamed); None if it cannot
    be written. A folder another process renamed first is kept, ours dropped."""
    from bertfit.prediction.engines import save_openvino

    folder = cache_root() / IR_FOLDER / key
    if (folder / IR_FILE).is_file():
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{key}."))
        save_openvino(ov_model, tmp / IR_FILE)
        try:
            os.replace(tmp, folder)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    except (OSError, RuntimeError) as err:
        logger.debug("could not keep the OpenVINO model in %s: %s", folder, err)
        return None
    return folder if (folder / IR_FILE).is_file() else None


def remember_engine(key: str, chosen: EngineTrial, trials: list[EngineTrial], model: dict[str, Any]) -> Path | None:
    """Add the engine choice to engine.json; None if the cache cannot be written."""
    entry = {"engine": chosen.engine, "dtype": chosen.dtype, "trials": [asdict(t) for t in trials],
             "model": model.get("folder")}  # fmt: skip
    return dtype_choice.write_choice(key, entry, CHOICES_FILE)
