"""`check`: data checks before training, over the inputs `train` takes (files, folders of shards, DataFrames),
read in windows into a `checks.collector.DataChecker`; `checked`: the same before training, cached."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from bertfit.checks.collector import DataChecker
from bertfit.checks.findings import CheckReport
from bertfit.config import RunConfig
from bertfit.data.io import data_files, windows
from bertfit.data.locks import building
from bertfit.data.rows import DataSource
from bertfit.data.write import write_json
from bertfit.errors import DataError

logger = logging.getLogger(__name__)

LOADER_ERRORS = {"no_rows", "too_few_classes", "unseen_labels", "labels_look_like_text"}  # train raises its own


def check(
    data: DataSource,
    validation: DataSource | None = None,
    test: DataSource | None = None,
    config: RunConfig | None = None,
    *,
    min_class_rows: int = 10,
    sample_rows: int = 100_000,
    lengths: bool = True,
    progress: bool = False,
    **overrides: Any,
) -> CheckReport:
    """Check labelled data before training: what would make a model or its scores untrustworthy, and what costs.

    Severities. "error": a trained model or its scores cannot be trusted: fewer than two classes; a label column
    that holds text; validation/test labels that train never has; a split with no usable rows; more than 1% of the
    validation or test rows have an exact text that is also in train (leakage). "warning": costs quality but is
    common in real data: empty texts; missing labels; conflicting duplicates (same normalised text, different
    labels); duplicates above 1% of rows; leakage up to 1%, only after normalising, or between validation and test;
    classes with fewer than `min_class_rows` training rows; imbalance (largest / smallest class) of 10 or more;
    shards that hold almost only one label; more than 5% of texts longer than max_length tokens; U+FFFD
    replacement characters, mojibake (ftfy's detector), control characters other than tab and newlines. "info":
    columns and types, the label distribution, fewer duplicates, a file sorted by label, token lengths.

    Texts are compared exactly (ends stripped, text columns joined as training joins them) and normalised (NFKC,
    casefold, punctuation and symbols removed, whitespace collapsed; see `checks.texts.normalise`).

    Args:
        data: the training data: a table file (csv, tsv, jsonl, parquet, h5, xlsx), a folder of shards, or a
            DataFrame; read in windows, so inputs larger than memory are fine.
        validation: labelled validation data, checked on its own and for leakage from train.
        test: labelled test data, checked on its own and for leakage from train and validation.
        config: a RunConfig; keyword overrides (`text_cols`, `label_col`, `label_map`, `max_length`, `model`)
            apply on top.
        min_class_rows: classes with fewer training rows are reported.
        sample_rows: token lengths are measured on a random sample of at most this many rows per split.
        lengths: measure token lengths with the model's tokenizer (False: skip it; no model is loaded).
        progress: show a progress bar while reading.
    """
    cfg = (config or RunConfig()).override(overrides).validate()
    inputs = _inputs({"train": data, "validation": validation, "test": test})
    tokenizer, max_length = _tokenizer(cfg) if lengths else (None, cfg.data.max_length)
    checker = DataChecker(cfg.data, tokenizer, max_length, min_class_rows, sample_rows)
    for split, source in inputs.items():
        frames = windows(source, cfg.data.read_as_text, cfg.data.read_options, f"the {split} DataFrame",
                         f"checking {split}", progress)  # fmt: skip
        for frame, name in frames:
            checker.add(frame, name, split)
    report = checker.finish()
    report.stats["model"] = (cfg.model.model or "default") if lengths else None
    return report


def checked(
    data: DataSource, validation: DataSource | None, cfg: RunConfig, cache_dir: str | Path | None, progress: bool
) -> dict[str, Any]:
    """`check` before training, cached by the inputs' identity: warnings are logged, an error stops the run.

    Returns the report as a dict (saved with the model). Token lengths are left out: training reports the
    truncated share from its own token cache.
    """
    from bertfit.data.cache import cache_root, input_identity, release_freed_memory

    sources = {"train": data, "validation": validation}
    identity = {split: input_identity(src, cfg.data) for split, src in _inputs(sources).items()}
    spec = {"format": 2, "inputs": identity, "data": dataclasses.asdict(cfg.data)}  # 2: CSV values never typed
    key = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:24]
    path = cache_root(cache_dir) / "checks" / f"{key}.json"
    if not path.is_file():
        with building(path, "data checks"):  # a run in parallel checking the same data is waited for, then read
            if not path.is_file():
                result = check(data, validation, config=cfg, lengths=False, progress=progress).to_dict()
                release_freed_memory()  # the pass freed many small pieces; training should not carry them
                write_json(result, path)
    result = json.loads(path.read_text(encoding="utf-8"))
    names = {split: f"the {split} DataFrame" if isinstance(src, pd.DataFrame) else str(src)
             for split, src in sources.items()}  # fmt: skip

    def where(finding: dict[str, Any]) -> str:
        return "+".join(names.get(split, split) for split in finding["split"].split("+"))

    for finding in result["findings"]:
        if finding["severity"] == "warning":
            logger.warning("%s: %s", where(finding), _as_advice_for(finding, cfg))
    # Errors that reading the data for training reports itself, with the row counts and the fix, are left to it.
    errors = [f for f in result["findings"] if f["severity"] == "error" and f["code"] not in LOADER_ERRORS]
    if errors:
        more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
        raise DataError(
            f"{where(errors[0])}: {errors[0]['message']}{more}; `bertfit check` lists every finding, "
            "`--no-check` trains anyway"
        )
    return result


def _as_advice_for(finding: dict[str, Any], cfg: RunConfig) -> str:
    """A finding's message for this training run: imbalance advice names the class weights already set, not the
    option to set them."""
    message = finding["message"]
    weights = cfg.train.class_weights
    if finding["code"] == "class_imbalance" and weights != "none":
        return message.replace("consider --class-weights auto", f"training with --class-weights {weights}")
    return message


def _inputs(sources: dict[str, DataSource | None]) -> dict[str, list[Path] | pd.DataFrame]:
    """Each given split as its files (all checked to exist before anything is read) or its DataFrame."""
    found: dict[str, list[Path] | pd.DataFrame] = {}
    for split, source in sources.items():
        if source is not None:
            found[split] = source if isinstance(source, pd.DataFrame) else data_files(source)
    return found


def _tokenizer(cfg: RunConfig) -> tuple[Any, int]:
    """The model's tokenizer and the max length training would use (the requested one, clamped to the model's)."""
    from bertfit.modeling import load_model_config, resolve_model
    from bertfit.tokenization import load_tokenizer, usable_max_length

    source, _ = resolve_model(cfg.model.model)
    tokenizer = load_tokenizer(source, cfg.model.trust_remote_code)
    return tokenizer, usable_max_length(cfg.data.max_length, tokenizer, load_model_config(source, cfg.model))
