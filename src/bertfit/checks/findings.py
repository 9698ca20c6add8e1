"""The findings of `bertfit check` (duplicates, conflicts, leakage, classes, shards, encoding), computed from the
compact per-row arrays that `checks.collector.DataChecker` collects: "exact" and "norm" are uint64 hashes of each
usable row's text and normalised text, "label" the label codes (-1: not tracked)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bertfit.checks.texts import short_name, show

EXAMPLES = 3  # examples shown per finding
LEAK_ERROR_SHARE = 0.01  # validation/test rows whose exact text is in train: above this share, scores mislead
DUPLICATE_WARN_SHARE = 0.01  # extra copies of texts, as a share of the split's rows
IMBALANCE_WARN = 10.0  # largest class / smallest class
SHARD_DOMINANT = 0.9  # one label holds at least this share of a shard's rows...
SHARD_OVERALL = 0.5  # ...while its share of the whole split is below this
ROW_PROBLEMS = {
    "empty_text": "have an empty or whitespace-only text; training leaves them out",
    "missing_label": "have no label; training leaves them out",
    "replacement_characters": "hold U+FFFD replacement characters (decoded with the wrong encoding before they were "
    "saved); go back to the source",
    "mojibake": "look like mojibake (UTF-8 read as another encoding, e.g. 'cafÃ©'); repair them with ftfy.fix_text",
    "control_characters": "hold control characters other than tab and newlines; strip them",
}


@dataclass
class Finding:
    """One thing `check` found: severity "error" | "warning" | "info", a short code, a one-line message with
    counts and a hint, how many rows (or texts, classes, shards) it concerns, the split, and a few examples."""

    severity: str
    code: str
    message: str
    count: int = 0
    split: str = ""
    examples: list[str] = field(default_factory=list)


def row_findings(split: str, columns: dict[str, str], rows: int, usable: int, tallies: dict) -> list[Finding]:
    """Columns, rows training leaves out (empty text, no label) and encoding problems; `tallies` maps a problem
    code to an object with `count` and `examples`."""
    listed = ", ".join(f"{c} ({t})" for c, t in columns.items())
    found = [Finding("info", "columns", f"{len(columns)} columns: {listed}", len(columns), split)]
    counts = {code: tally.count for code, tally in tallies.items()}
    if usable == 0:
        dropped = f"{counts.get('empty_text', 0):,} with empty text, {counts.get('missing_label', 0):,} with no label"
        msg = f"no usable rows ({rows:,} read: {dropped}); check --text-col and --label-col"
        found.append(Finding("error", "no_rows", msg, rows, split))
    for code, hint in ROW_PROBLEMS.items():
        if counts.get(code):
            msg = f"{counts[code]:,} of {rows:,} rows {hint}"
            found.append(Finding("warning", code, msg, counts[code], split, tallies[code].examples))
    return found


def duplicate_findings(split: str, arrays: dict[str, np.ndarray], texts: dict[int, str]) -> list[Finding]:
    """Texts that occur more than once, exactly and (when that finds more) after normalising; `texts` maps hashes
    (exact and normalised) to texts that can be shown."""
    found = []
    exact_extra = 0
    for key in ("exact", "norm"):
        keys, counts = np.unique(arrays[key], return_counts=True)
        many = counts > 1
        extra = int(counts[many].sum() - many.sum())
        if key == "exact":
            exact_extra = extra
        if extra == 0 or (key == "norm" and extra == exact_extra):
            continue
        # Examples: texts spelt more than one way first (when normalised), then the most repeated.
        respelt = np.isin(keys[many], _respelt(arrays)) if key == "norm" else np.zeros(int(many.sum()), dtype=bool)
        order = np.lexsort((-counts[many], ~respelt))
        shown = dict(zip(keys[many][order].tolist(), counts[many][order].tolist()))
        examples = [f"{show(texts[k])} x{shown[k]}" for k in first_known(keys[many][order], texts)]
        what = "exactly" if key == "exact" else f"after normalising ({extra - exact_extra:,} copies more than exactly)"
        share = extra / arrays[key].size
        msg = (
            f"{int(many.sum()):,} texts occur more than once {what}: {int(counts[many].sum()):,} rows, {extra:,} "
            f"extra copies ({share:.1%} of rows); drop the copies unless they are meant as weights"
        )
        code = "duplicates" if key == "exact" else "normalised_duplicates"
        severity = "warning" if share > DUPLICATE_WARN_SHARE else "info"
        found.append(Finding(severity, code, msg, int(many.sum()), split, examples))
    return found


def _respelt(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Normalised hashes that stand for more than one exact text."""
    spellings = pd.DataFrame({"norm": arrays["norm"], "exact": arrays["exact"]}).drop_duplicates()["norm"]
    counts = spellings.value_counts()
    return counts.index[counts > 1].to_numpy(dtype=np.uint64)


def conflict_findings(split: str, arrays: dict[str, np.ndarray], texts: dict[int, str], names: list[str]) -> list:
    """Texts (compared after normalising) that carry different labels in different rows."""
    pairs = pd.DataFrame({"norm": arrays["norm"], "label": arrays["label"]}).drop_duplicates()
    per_text = pairs.groupby("norm").size()
    conflicted = per_text.index[per_text > 1].to_numpy(dtype=np.uint64)
    if conflicted.size == 0:
        return []
    rows = int(np.isin(arrays["norm"], conflicted).sum())
    examples = []
    for key in first_known(conflicted, texts):
        codes = arrays["label"][arrays["norm"] == key]
        labels = ", ".join(f"{names[c]} {n}" for c, n in enumerate(np.bincount(codes[codes >= 0])) if n)
        examples.append(f"{show(texts[key])} ({labels})")
    msg = (
        f"{conflicted.size:,} texts carry different labels in different rows ({rows:,} rows; compared after "
        "normalising); the model learns contradictions: fix the labels or drop these rows"
    )
    return [Finding("warning", "conflicting_duplicates", msg, int(conflicted.size), split, examples)]


def leakage_findings(split: str, rows: dict, ref_split: str, ref: dict, texts: dict[int, str]) -> list[Finding]:
    """Rows of `split` whose text also occurs in `ref_split`: exactly, and (beyond those) after normalising.

    More than LEAK_ERROR_SHARE exact leakage from train is an error; the rest is a warning. Findings between two
    splits other than train name both ("validation+test")."""
    exact = np.isin(rows["exact"], ref["exact"])
    normal = np.isin(rows["norm"], ref["norm"]) & ~exact
    found = []
    for code, mask, how in (("leakage", exact, "exactly"), ("leakage_normalised", normal, "only after normalising")):
        count = int(mask.sum())
        if not count:
            continue
        share = count / rows["exact"].size
        distinct = np.unique(rows["exact"][mask])
        error = code == "leakage" and ref_split == "train" and share > LEAK_ERROR_SHARE
        msg = (
            f"{count:,} of {rows['exact'].size:,} {split} rows ({share:.1%}; {distinct.size:,} distinct texts) also "
            f"occur in {ref_split} {how}; scores on them measure memory, not generalisation: drop them from {split}"
        )
        examples = [show(texts[h]) for h in first_known(distinct, texts)]
        where = split if ref_split == "train" else f"{ref_split}+{split}"
        found.append(Finding("error" if error else "warning", code, msg, count, where, examples))
    return found


def class_findings(split: str, counts: dict[str, int], min_rows: int) -> list[Finding]:
    """Fewer than two classes (error); the distribution and imbalance ratio; tiny classes (warning)."""
    if len(counts) < 2:
        only = f" ('{next(iter(counts))}')" if counts else ""
        msg = f"only {len(counts)} class{only} in the label column; a classifier needs at least two"
        return [Finding("error", "too_few_classes", msg, len(counts), split)]
    ratio = max(counts.values()) / min(counts.values())
    shown = ", ".join(f"{name} {n:,}" for name, n in list(counts.items())[:12])
    more = f" and {len(counts) - 12} more" if len(counts) > 12 else ""
    msg = f"{len(counts)} classes: {shown}{more}; imbalance ratio {ratio:.1f} (largest / smallest class)"
    found = [Finding("info", "label_distribution", msg, len(counts), split)]
    if ratio >= IMBALANCE_WARN:
        msg = f"the largest class has {ratio:.1f}x the rows of the smallest; consider --class-weights auto"
        found.append(Finding("warning", "class_imbalance", msg, len(counts), split))
    tiny = sorted(((n, name) for name, n in counts.items() if n < min_rows))
    if tiny:
        listed = ", ".join(f"{name} ({n})" for n, name in tiny[:8]) + (", ..." if len(tiny) > 8 else "")
        msg = f"{len(tiny)} classes have fewer than {min_rows} rows: {listed}; too few to learn or to score"
        found.append(Finding("warning", "tiny_classes", msg, len(tiny), split))
    return found


def unseen_label_findings(split: str, ref_split: str, counts: dict[str, int], ref: dict[str, int]) -> list[Finding]:
    unseen = {name: n for name, n in counts.items() if name not in ref}
    if not unseen:
        return []
    listed = ", ".join(f"'{name}' ({n})" for name, n in list(unseen.items())[:5])
    msg = (
        f"{len(unseen)} labels never occur in {ref_split}: {listed}; a model trained on {ref_split} cannot predict them"
    )
    return [Finding("error", "unseen_labels", msg, sum(unseen.values()), split)]


def text_label_finding(split: str, column: str, distinct: int, rows: int, capped: bool) -> Finding:
    many = f"more than {distinct:,}" if capped else f"{distinct:,}"
    msg = f"column '{column}' has {many} distinct values in {rows:,} rows; it looks like text, not labels"
    return Finding("error", "labels_look_like_text", msg + "; pass --label-col with the label column", distinct, split)


def shard_findings(split: str, shards: dict[str, np.ndarray], names: list[str]) -> list[Finding]:
    """Shards (files of a folder) where one label holds almost all rows while it is far rarer overall."""
    width = max(len(c) for c in shards.values())
    total = sum(np.pad(c, (0, width - len(c))) for c in shards.values())
    overall = total / max(total.sum(), 1)
    dominated = []
    for name, counts in shards.items():
        rows, top = counts.sum(), int(np.argmax(counts)) if counts.size else 0
        if rows >= 10 and counts[top] >= SHARD_DOMINANT * rows and overall[top] < SHARD_OVERALL:
            share = f"{counts[top] / rows:.0%} {names[top]} ({overall[top]:.0%} overall)"
            dominated.append(f"{short_name(name)}: {share}")
    if not dominated:
        return []
    msg = (
        f"{len(dominated)} of {len(shards)} shards hold almost only one label (>= {SHARD_DOMINANT:.0%} of their "
        "rows); bertfit shuffles across shards, but tools that read shards in order, or split off the last ones, "
        "do not: shuffle the rows across shards"
    )
    return [Finding("warning", "shards_single_label", msg, len(dominated), split, dominated[:EXAMPLES])]


def sorted_finding(split: str, source: str, counts: np.ndarray, runs: int) -> list[Finding]:
    """A file whose rows come in a few long runs of one label each (sorted or grouped by label)."""
    classes, rows = int(np.count_nonzero(counts)), int(counts.sum())
    if classes < 2 or runs > 2 * classes or rows < 10 * runs:
        return []
    msg = (
        f"{short_name(source)} is sorted by label ({runs} runs of equal labels in {rows:,} rows); bertfit "
        "shuffles, but take any validation or test split at random, not from the end"
    )
    return [Finding("info", "sorted_by_label", msg, runs, split)]


def first_known(keys: np.ndarray, texts: dict[int, str]) -> list[int]:
    """The first few keys, in the given order, that have a text to show."""
    found: list[int] = []
    for key in keys.tolist():
        if key in texts:
            found.append(key)
            if len(found) == EXAMPLES:
                break
    return found


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
