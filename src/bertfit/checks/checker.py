"""`check`: data checks before training, in one streaming pass that keeps compact per-row arrays, never all texts.

`DataChecker` takes windows of rows (`add`) and keeps, per usable row, a 64-bit hash of the text and of its
normalised form, a label code and the length in characters (24 bytes a row: 10M rows take 240 MB); per file it
keeps label counts, and a bounded sample of texts for examples and token lengths. `finish()` turns that into a
`CheckReport` with the findings of `checks.py`. `check()` drives it over the inputs `train` takes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bertfit.config import DataConfig, RunConfig
from bertfit.data.io import data_files, estimate_rows, iter_frames, write_json
from bertfit.data.locks import building
from bertfit.data.rows import (
    DataSource,
    Finding,
    class_findings,
    conflict_findings,
    duplicate_findings,
    encoding_problems,
    leakage_findings,
    problem_at,
    row_findings,
    row_parts,
    shard_findings,
    short_name,
    show,
    shown_text,
    sorted_finding,
    text_hashes,
    text_label_finding,
    unseen_label_findings,
)
from bertfit.errors import DataError
from bertfit.labels import SET_JOIN, is_list_column, label_sets, label_strings

logger = logging.getLogger(__name__)

WINDOW_ROWS = 50_000
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
TRUNCATED_WARN_SHARE = 0.05  # texts longer than max_length tokens
EXAMPLE_TEXTS = 100_000  # texts kept to show as examples
EXAMPLES = 3
LOADER_ERRORS = {"no_rows", "too_few_classes", "unseen_labels", "labels_look_like_text"}  # train raises its own
LABEL_CAP = 10_000  # distinct label values tracked; more means the column holds text


@dataclass
class CheckReport:
    """Findings, most severe first, and statistics: rows, label counts and length percentiles per split."""

    findings: list[Finding]
    stats: dict[str, Any]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the numbers of errors and warnings, the findings and the statistics."""
        return {
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "findings": [asdict(f) for f in self.findings],
            "stats": self.stats,
        }


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
    casefold, punctuation and symbols removed, whitespace collapsed; see `checks.normalise`).

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
        for frame, name in _windows(source, cfg.data, split, progress):
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
            logger.warning("%s: %s", where(finding), finding["message"])
    # Errors that reading the data for training reports itself, with the row counts and the fix, are left to it.
    errors = [f for f in result["findings"] if f["severity"] == "error" and f["code"] not in LOADER_ERRORS]
    if errors:
        more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
        raise DataError(
            f"{where(errors[0])}: {errors[0]['message']}{more}; `bertfit check` lists every finding, "
            "`--no-check` trains anyway"
        )
    return result


class DataChecker:
    """Streaming accumulator of the checks: `add` each window of rows as it is read, then `finish` once.

    Training can feed it the windows it reads (`add(frame, path, "train")`), so the checks cost no second pass.
    `tokenizer` (optional) measures token lengths on a sample of `sample_rows` texts per split.
    """

    def __init__(
        self,
        cfg: DataConfig | None = None,
        tokenizer: Any = None,
        max_length: int = 128,
        min_class_rows: int = 10,
        sample_rows: int = 100_000,
        seed: int = 0,
    ) -> None:
        self.cfg = cfg or DataConfig()
        self.tokenizer, self.max_length, self.min_class_rows = tokenizer, max_length, min_class_rows
        self.sample_rows, self.seed = sample_rows, seed
        self.labels = _LabelCodes(self.cfg.label_map, self.cfg.is_multi_label, self.cfg.label_sep or ",")
        self.splits: dict[str, _Split] = {}
        self.texts = _TextSample(EXAMPLE_TEXTS)

    def add(self, frame: pd.DataFrame, source: str | Path = "the DataFrame", split: str = "train") -> None:
        """Take one window of rows of a split, read from `source` (a file path, or a name for messages)."""
        if split not in self.splits:
            self.splits[split] = _Split(split, _Reservoir(self.sample_rows, self.seed + len(self.splits)))
        part = self.splits[split]
        src = part.sources.setdefault(str(source), _Source(str(source)))
        part.columns = part.columns or {str(c): str(t) for c, t in frame.dtypes.items()}
        texts, labels, no_text, no_label = row_parts(frame, self.cfg, str(source))
        rows = src.rows + 1 + np.arange(len(frame))  # row numbers in the file, from 1, header not counted
        part.tallies["empty_text"].add(no_text.to_numpy(dtype=bool), src.name, rows)
        part.tallies["missing_label"].add((no_label & ~no_text).to_numpy(dtype=bool), src.name, rows)
        keep = ~(no_text | no_label).to_numpy(dtype=bool)
        if keep.any():
            self._add_usable(part, src, texts[keep], labels[keep], rows[keep])
        src.rows += len(frame)

    def _add_usable(self, part: _Split, src: _Source, texts: pd.Series, labels: pd.Series, rows: np.ndarray) -> None:
        if self.cfg.pair_col:  # pairs are checked as one text: 'first [SEP] second'
            texts = texts.map(shown_text)
        codes = self.labels.add(labels)
        exact, norm = text_hashes(texts)
        chars = texts.str.len().to_numpy(dtype=np.int32)
        for key, values in (("exact", exact), ("norm", norm), ("label", codes), ("chars", chars)):
            part.chunks[key].append(values)
        src.add_labels(codes)
        values = texts.tolist()
        for code, mask in encoding_problems(texts).items():
            part.tallies[code].add(mask, src.name, rows, values, code)
        self.texts.add(values, exact, norm)
        part.sample.add(values)

    def finish(self) -> CheckReport:
        """All findings, most severe first, and the statistics."""
        names, texts = self.labels.names, self.texts.lookup()
        findings: list[Finding] = []
        stats: dict[str, Any] = {"max_length": self.max_length, "splits": {}}
        for part in self.splits.values():
            arrays = part.arrays()
            split_stats = stats["splits"][part.name] = _split_stats(part, arrays, names, self.labels)
            findings += row_findings(part.name, part.columns, part.rows, arrays["label"].size, part.tallies)
            findings += self._no_label_findings(part.name, arrays, split_stats)
            findings += duplicate_findings(part.name, arrays, texts)
            findings += conflict_findings(part.name, arrays, texts, names)
            findings += self._order_findings(part, names)
            if self.tokenizer is not None and part.sample.items:
                split_stats["tokens"], finding = self._length_finding(part)
                findings.append(finding)
        findings += self._label_findings(stats)
        for i, later in enumerate(self.splits.values()):
            for earlier in list(self.splits.values())[:i]:
                findings += leakage_findings(later.name, later.arrays(), earlier.name, earlier.arrays(), texts)
        findings.sort(key=lambda f: SEVERITY_ORDER[f.severity])
        return CheckReport(findings, stats)

    def _no_label_findings(self, split: str, arrays: dict[str, np.ndarray], stats: dict[str, Any]) -> list[Finding]:
        """Multi-label rows whose set of labels is empty ("", spaces, []): usable, as negatives for every label."""
        code = self.labels.codes.get("") if self.labels.multi else None
        if code is None:
            return []
        count = stats["rows_without_labels"] = int(np.count_nonzero(arrays["label"] == code))
        msg = f"{count:,} of {arrays['label'].size:,} usable rows have no labels (negative for every label)"
        return [Finding("info", "no_labels", msg, count, split)] if count else []

    def _order_findings(self, part: _Split, names: list[str]) -> list[Finding]:
        if len(part.sources) > 1:
            return shard_findings(part.name, {s.name: s.counts for s in part.sources.values()}, names)
        src = next(iter(part.sources.values()))
        return sorted_finding(part.name, src.name, src.counts, src.runs)

    def _label_findings(self, stats: dict[str, Any]) -> list[Finding]:
        """Classes of the reference split (train, or the first split added), and labels the others add."""
        ref = next(iter(self.splits), None) if "train" not in self.splits else "train"
        if ref is None:
            return []
        ref_stats = stats["splits"][ref]
        distinct, rows = len(self.labels.members()), ref_stats["usable_rows"]
        if distinct > max(20, rows // 2):
            return [text_label_finding(ref, self.cfg.label_col, distinct, rows, self.labels.full)]
        counts = ref_stats["label_counts"]
        found = class_findings(ref, counts, self.min_class_rows)
        if counts:
            stats["imbalance_ratio"] = round(max(counts.values()) / min(counts.values()), 2)
        for name, split_stats in stats["splits"].items():
            if name != ref:
                found += unseen_label_findings(name, ref, split_stats["label_counts"], counts)
        return found

    def _length_finding(self, part: _Split) -> tuple[dict[str, Any], Finding]:
        from bertfit.tokenization import ENCODE_CHUNK, WindowEncoder

        encoder = WindowEncoder(self.tokenizer, 1 << 20)  # no practical cap: full lengths, for the percentiles
        texts = part.sample.items
        chunks = range(0, len(texts), ENCODE_CHUNK)
        lengths = np.concatenate([encoder(texts[i : i + ENCODE_CHUNK]).lengths for i in chunks])
        over = int(np.count_nonzero(lengths > self.max_length))
        share = over / len(lengths)
        sampled = part.sample.seen > len(texts)
        tokens = {**_percentiles(lengths), "truncated_share": round(share, 4), "measured_rows": len(lengths)}
        tokens["sampled"] = sampled
        where = f"a random sample of {len(texts):,} rows" if sampled else f"all {len(texts):,} rows"
        dist = ", ".join(f"{k} {tokens[k]}" for k in ("p50", "p90", "p99", "max"))
        warn = share > TRUNCATED_WARN_SHARE
        fate = {"truncate": "would be cut", "head-tail": "would lose their middle", "sliding": "become several windows"}
        message = (
            f"{share:.1%} of texts are longer than {self.max_length} tokens and {fate[self.cfg.long]} ({over:,} of "
            f"{where}); "
            f"tokens per text: {dist}" + ("; raise --max-length to keep more of them" if warn else "")
        )
        return tokens, Finding("warning" if warn else "info", "long_texts", message, over, part.name)


class _Tally:
    """Rows with one problem: how many, and where the first few are (with their text, when there is one)."""

    def __init__(self) -> None:
        self.count = 0
        self.examples: list[str] = []

    def add(
        self, mask: np.ndarray, source: str, rows: np.ndarray, texts: list[str] | None = None, code: str = ""
    ) -> None:
        hits = np.flatnonzero(mask)
        self.count += len(hits)
        for i in hits[: max(0, EXAMPLES - len(self.examples))]:
            where = f"{short_name(source)} row {rows[i]}"
            if texts is not None:
                where += f": {show(texts[i], at=problem_at(code, texts[i]))}"
            self.examples.append(where)


@dataclass
class _Source:
    """One file (or DataFrame) of a split: rows read so far, usable rows per label code, runs of equal labels."""

    name: str
    rows: int = 0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    runs: int = 0
    last: int = -2

    def add_labels(self, codes: np.ndarray) -> None:
        self.runs += int(np.count_nonzero(codes[1:] != codes[:-1])) + int(codes[0] != self.last)
        self.last = int(codes[-1])
        counts = np.bincount(codes[codes >= 0], minlength=len(self.counts))
        self.counts = np.pad(self.counts, (0, len(counts) - len(self.counts))) + counts


@dataclass
class _Split:
    """What one split (train, validation, test) leaves behind: per-row arrays in chunks, per-file counts."""

    name: str
    sample: _Reservoir
    sources: dict[str, _Source] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    chunks: dict[str, list[np.ndarray]] = field(
        default_factory=lambda: {"exact": [], "norm": [], "label": [], "chars": []}
    )
    tallies: defaultdict[str, _Tally] = field(default_factory=lambda: defaultdict(_Tally))

    def arrays(self) -> dict[str, np.ndarray]:
        dtypes = {"exact": np.uint64, "norm": np.uint64, "label": np.int32, "chars": np.int32}
        for key, parts in self.chunks.items():
            if len(parts) != 1:  # concatenated once; later calls are free
                self.chunks[key] = [np.concatenate(parts) if parts else np.zeros(0, dtype=dtypes[key])]
        return {key: parts[0] for key, parts in self.chunks.items()}

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.sources.values())


class _LabelCodes:
    """Label values (after --label-map) -> integer codes shared by all splits, in order of first appearance.

    Stops growing at LABEL_CAP values (a text column given as the label), so memory stays bounded; later values
    get code -1.
    """

    def __init__(self, label_map: dict[str, str] | None, multi: bool = False, sep: str = ",") -> None:
        self.label_map = label_map or {}
        self.codes: dict[str, int] = {}
        self.full = False
        self.multi, self.sep = multi, sep

    @property
    def names(self) -> list[str]:
        """Each code's label; for multi-label, its label set written as in the data ('joy,love')."""
        return [v.replace(SET_JOIN, self.sep) for v in self.codes] if self.multi else list(self.codes)

    def members(self, counts: np.ndarray | None = None) -> dict[str, int]:
        """Single labels and their rows (from per-code row counts); multi-label sets count for each member."""
        counts = np.ones(len(self.codes), dtype=np.int64) if counts is None else counts
        found: dict[str, int] = {}
        for value, n in zip(self.codes, counts.tolist()):
            for name in value.split(SET_JOIN) if self.multi else [value]:
                if name:
                    found[name] = found.get(name, 0) + int(n)
        return found

    def add(self, raw: pd.Series) -> np.ndarray:
        if not self.codes and is_list_column(raw):
            self.multi = True
        strings = label_sets(raw, self.sep) if self.multi else label_strings(raw)
        if self.label_map:  # each member of a label set is renamed on its own
            rename = self.label_map.get
            strings = strings.map(lambda v: SET_JOIN.join(sorted({rename(m, m) for m in v.split(SET_JOIN)})))
        for value in strings.unique().tolist():
            if value not in self.codes:
                if len(self.codes) >= LABEL_CAP:
                    self.full = True
                    break
                self.codes[value] = len(self.codes)
        return strings.map(self.codes).fillna(-1).to_numpy(dtype=np.int32)


class _Reservoir:
    """A uniform random sample of at most `size` texts from a stream (reservoir sampling, algorithm R)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seen = size, 0
        self.items: list[str] = []
        self.rng = np.random.default_rng(seed)

    def add(self, texts: list[str]) -> None:
        free = min(max(self.size - len(self.items), 0), len(texts))
        self.items.extend(texts[:free])
        if free < len(texts):
            positions = np.arange(self.seen + free, self.seen + len(texts))
            slots = self.rng.integers(0, positions + 1)  # row i replaces slot j, drawn from 0..i, when j < size
            for i in np.flatnonzero(slots < self.size):
                self.items[slots[i]] = texts[free + i]
        self.seen += len(texts)


class _TextSample:
    """Texts kept to show as examples: those whose normalised hash is among the smallest seen (a bottom-k sample),
    so every spelling of a kept text is kept, in every split. Small data is kept whole; big data is sampled."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.limit = np.iinfo(np.uint64).max
        self.texts: dict[int, tuple[str, int]] = {}  # exact hash -> (text, normalised hash)

    def add(self, texts: list[str], exact: np.ndarray, norm: np.ndarray) -> None:
        for i in np.flatnonzero(norm <= self.limit):
            self.texts.setdefault(int(exact[i]), (texts[i][:200], int(norm[i])))
        if len(self.texts) > self.size:
            norms = np.unique(np.fromiter((n for _, n in self.texts.values()), dtype=np.uint64))
            self.limit = norms[len(norms) // 2]
            self.texts = {k: v for k, v in self.texts.items() if v[1] <= self.limit}

    def lookup(self) -> dict[int, str]:
        """Exact and normalised hashes -> a text to show."""
        found = {norm: text for text, norm in self.texts.values()}
        found.update((exact, text) for exact, (text, _) in self.texts.items())
        return found


def _split_stats(part: _Split, arrays: dict[str, np.ndarray], names: list[str], labels: _LabelCodes) -> dict[str, Any]:
    counts = np.bincount(arrays["label"][arrays["label"] >= 0], minlength=len(names))
    members = labels.members(counts)  # rows per single label (multi-label: a row counts for each of its labels)
    by_label = {name: n for name, n in sorted(members.items(), key=lambda kv: -kv[1]) if n}
    return {
        "files": len(part.sources),
        "rows": part.rows,
        "usable_rows": int(arrays["label"].size),
        "columns": part.columns,
        "label_counts": by_label,
        "chars": _percentiles(arrays["chars"]),
        "duplicate_texts": _repeated(arrays["exact"]),
        "normalised_duplicate_texts": _repeated(arrays["norm"]),
    }


def _repeated(keys: np.ndarray) -> int:
    _, counts = np.unique(keys, return_counts=True)
    return int(np.count_nonzero(counts > 1))


def _percentiles(values: np.ndarray) -> dict[str, int]:
    if values.size == 0:
        return {}
    points = np.percentile(values, [50, 90, 95, 99])
    return {**{f"p{p}": int(round(v)) for p, v in zip((50, 90, 95, 99), points)}, "max": int(values.max())}


def _inputs(sources: dict[str, DataSource | None]) -> dict[str, list[Path] | pd.DataFrame]:
    """Each given split as its files (all checked to exist before anything is read) or its DataFrame."""
    found: dict[str, list[Path] | pd.DataFrame] = {}
    for split, source in sources.items():
        if source is not None:
            found[split] = source if isinstance(source, pd.DataFrame) else data_files(source)
    return found


def _windows(
    source: list[Path] | pd.DataFrame, cfg: DataConfig, split: str, progress: bool
) -> Iterator[tuple[pd.DataFrame, str]]:
    from tqdm.auto import tqdm

    total = len(source) if isinstance(source, pd.DataFrame) else estimate_rows(source)
    with tqdm(total=total, desc=f"checking {split}", unit=" rows", disable=not progress) as bar:
        if isinstance(source, pd.DataFrame):
            for start in range(0, max(len(source), 1), WINDOW_ROWS):
                yield source.iloc[start : start + WINDOW_ROWS].reset_index(drop=True), f"the {split} DataFrame"
                bar.update(min(WINDOW_ROWS, len(source) - start))
            return
        for path in source:
            for frame in iter_frames(path, WINDOW_ROWS, cfg.read_as_text, cfg.read_options):
                yield frame, str(path)
                bar.update(len(frame))


def _tokenizer(cfg: RunConfig) -> tuple[Any, int]:
    """The model's tokenizer and the max length training would use (the requested one, clamped to the model's)."""
    from bertfit.modeling import load_model_config, resolve_model
    from bertfit.tokenization import load_tokenizer, usable_max_length

    source, _ = resolve_model(cfg.model.model)
    tokenizer = load_tokenizer(source, cfg.model.trust_remote_code)
    return tokenizer, usable_max_length(cfg.data.max_length, tokenizer, load_model_config(source, cfg.model))
