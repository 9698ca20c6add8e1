"""`DataChecker`: the checks of `bertfit check` in one streaming pass that keeps compact per-row arrays, never
all texts.

Per usable row it keeps a 64-bit hash of the text and of its normalised form, a label code and the length in
characters (24 bytes a row: 10M rows take 240 MB); per file it keeps label counts, and a bounded sample of texts
for examples and token lengths. `finish()` turns that into a `CheckReport` with the findings of `checks.findings`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bertfit.checks.findings import (
    EXAMPLES,
    CheckReport,
    Finding,
    class_findings,
    conflict_findings,
    duplicate_findings,
    leakage_findings,
    row_findings,
    shard_findings,
    sorted_finding,
    text_label_finding,
    unseen_label_findings,
)
from bertfit.checks.texts import Reservoir, TextSample, encoding_problems, problem_at, short_name, show, text_hashes
from bertfit.config import DataConfig
from bertfit.data.rows import row_parts, shown_text
from bertfit.labels import LabelCodes

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
TRUNCATED_WARN_SHARE = 0.05  # texts longer than max_length tokens
EXAMPLE_TEXTS = 100_000  # texts kept to show as examples
LABEL_CAP = 10_000  # distinct label values tracked; more means the column holds text


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
        self.labels = LabelCodes(self.cfg.is_multi_label, self.cfg.label_sep or ",", self.cfg.label_map, LABEL_CAP)
        self.splits: dict[str, _Split] = {}
        self.texts = TextSample(EXAMPLE_TEXTS)

    def add(self, frame: pd.DataFrame, source: str | Path = "the DataFrame", split: str = "train") -> None:
        """Take one window of rows of a split, read from `source` (a file path, or a name for messages)."""
        if split not in self.splits:
            self.splits[split] = _Split(split, Reservoir(self.sample_rows, self.seed + len(self.splits)))
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
    sample: Reservoir
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


def _split_stats(part: _Split, arrays: dict[str, np.ndarray], names: list[str], labels: LabelCodes) -> dict[str, Any]:
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
