"""Data checks: usable rows for training, and the findings of `bertfit check` (duplicates, conflicts, leakage,
classes, shards, encoding) computed from the compact per-row arrays that `datacheck.DataChecker` collects."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bertfit.config import DataConfig
from bertfit.data.io import PLAIN, ReadOptions, read_table, require_columns
from bertfit.errors import DataError
from bertfit.labels import LabelSchema, is_list_column

logger = logging.getLogger(__name__)

DataSource = str | Path | pd.DataFrame


@dataclass
class LabelledData:
    """Texts with label ids, ready to tokenize; `dropped` says how many rows were left out and why."""

    texts: list[str]
    labels: np.ndarray
    source: str
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)


def load_frame(data: DataSource, name: str = "data", opts: ReadOptions = PLAIN) -> tuple[pd.DataFrame, str]:
    """A DataFrame and a name for messages, from a path or a DataFrame."""
    if isinstance(data, pd.DataFrame):
        return data, name
    if isinstance(data, (str, Path)):
        return read_table(data, opts=opts), str(data)
    raise DataError(f"{name}: expected a file path or a pandas DataFrame, got {type(data).__name__}")


def join_text(df: pd.DataFrame, text_cols: list[str], source: str) -> pd.Series:
    """One text per row: the named columns joined by a space; None where every part is empty or null."""
    require_columns(df, text_cols, source, "--text-col")
    columns = [[clean_text(v) for v in df[c].tolist()] for c in text_cols]
    joined = [" ".join(p for p in parts if p is not None) or None for parts in zip(*columns)]
    return pd.Series(joined, index=df.index, dtype=object)


def require_text(df: pd.DataFrame, text_cols: list[str], source: str) -> None:
    """Fail when every text column holds only numbers (ids, star ratings, scores): the wrong column was picked."""
    examples = []
    for col in text_cols:
        values = df[col].dropna().astype(str).str.strip()
        values = values[values != ""]
        if values.empty or not _numbers(values.head(100)) or not _numbers(values):
            return
        examples.append(f"'{values.iloc[0]}'")
    named = " and ".join(f"'{c}'" for c in text_cols)
    what = f"column {named} holds" if len(text_cols) == 1 else f"columns {named} hold"
    raise DataError(
        f"{source}: {what} numbers, not text (e.g. {', '.join(examples)}); {_text_column_hint(df, text_cols)}"
    )


def _numbers(values: pd.Series) -> bool:
    return bool(pd.to_numeric(values, errors="coerce").notna().all())


def _text_column_hint(df: pd.DataFrame, exclude: list[str]) -> str:
    """--text-col with the column of the longest values that are not numbers, if there is one."""
    lengths = {}
    for col in df.columns:
        values = df[col].head(1000).dropna()
        text_like = pd.api.types.is_string_dtype(values) or values.dtype == object
        if col not in exclude and text_like and len(values) and not _numbers(values.astype(str)):
            lengths[col] = values.astype(str).str.len().mean()
    return f"pass --text-col {max(lengths, key=lengths.get)}" if lengths else "pass --text-col with the text column"


def load_labelled(
    data: DataSource,
    cfg: DataConfig,
    schema: LabelSchema | None = None,
    role: str = "training",
    known_from: str = "the model's training data",
) -> tuple[LabelledData, LabelSchema]:
    """Read texts and labels; drop (and report) rows with no text or no label; build or apply the schema."""
    df, source = load_frame(data, role, cfg.read_options)
    if len(df) == 0:
        raise DataError(f"{source}: no rows; expected a header row and at least one labelled row")
    texts, labels, dropped = usable_rows(df, cfg, source)
    for why, count in dropped.items():
        if count:
            logger.warning("%s: dropped %d of %d rows with %s", source, count, len(df), why)
    if len(texts) == 0:
        raise DataError(
            f"{source}: no rows left after dropping {dropped['empty text']} with empty text and "
            f"{dropped['missing label']} with no label in '{cfg.label_col}'; {no_rows_fix(dropped)}"
        )
    if schema is not None and schema.multi_label:
        hot = schema.encode_sets(labels, source, cfg.label_col, known_from)
        return LabelledData(texts.tolist(), hot, source, {k: v for k, v in dropped.items() if v}), schema
    new_schema = schema is None
    if schema is None:
        schema = LabelSchema.from_labels(labels, cfg.label_map, source, cfg.label_col)
    names = schema.to_names(labels, source, cfg.label_col, known_from)  # also checks --label-map covers all
    if new_schema:
        seen = names.unique()
        if len(seen) > max(20, len(labels) // 2):
            raise DataError(
                f"{source}: column '{cfg.label_col}' has {len(seen)} distinct values in {len(labels)} rows; "
                "it looks like text, not labels; pass --label-col with the label column"
            )
        if len(seen) < 2:
            raise DataError(
                f"{source}: column '{cfg.label_col}' has only one class ('{seen[0]}'); a classifier needs at least two"
            )
    ids = names.map(schema.label2id).to_numpy(dtype=np.int64)
    return LabelledData(texts.tolist(), ids, source, {k: v for k, v in dropped.items() if v}), schema


def usable_rows(df: pd.DataFrame, cfg: DataConfig, source: str) -> tuple[pd.Series, pd.Series, dict[str, int]]:
    """Joined texts and raw labels of the rows that have both, and how many rows were left out for each reason."""
    texts, labels, no_text, no_label = row_parts(df, cfg, source)
    dropped = {"empty text": int(no_text.sum()), "missing label": int((no_label & ~no_text).sum())}
    keep = ~(no_text | no_label)
    return texts[keep], labels[keep], dropped


def no_rows_fix(dropped: dict[str, int]) -> str:
    """What to do when every row was dropped, by the reason most rows were."""
    if dropped.get("missing label", 0) >= dropped.get("empty text", 0):
        return "fill in the labels, or pass --label-col with the column that holds them"
    return "fill in the texts, or pass --text-col with the column that holds them"


def row_parts(df: pd.DataFrame, cfg: DataConfig, source: str) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series]:
    """Joined texts, raw labels, and the masks of rows with no text and with no label (all rows, in order).

    A missing label is a null; an empty one ("", spaces) too, except for multi-label, where it is an empty set."""
    texts, no_text = input_texts(df, cfg.text_cols, cfg.pair_col, source)
    require_columns(df, [cfg.label_col], source, "--label-col")
    labels = df[cfg.label_col]
    no_label = labels.isna()
    if not (cfg.is_multi_label or is_list_column(labels)):  # an empty set of labels is a row negative for every label
        no_label |= labels.astype(str).str.strip() == ""
    return texts, labels, no_text, no_label


def input_texts(
    df: pd.DataFrame, text_cols: list[str], pair_col: str | None, source: str
) -> tuple[pd.Series, pd.Series]:
    """What the model reads from each row, and the mask of rows with nothing to read. With `pair_col` each row
    is a (text, second text) tuple for the tokenizer's pair encoding, missing when either side is empty."""
    texts = join_text(df, text_cols, source)
    require_text(df, text_cols, source)
    if pair_col is None:
        return texts, texts.isna()
    second = join_text(df, [pair_col], source)
    missing = texts.isna() | second.isna()
    return pd.Series(list(zip(texts.tolist(), second.tolist())), index=df.index, dtype=object), missing


def shown_text(value: str | tuple[str, str]) -> str:
    """A model input as one string: a pair's two texts joined by ' [SEP] ' (for hashing, checks and examples)."""
    return value if isinstance(value, str) else " [SEP] ".join(value)


def clean_text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    return text or None


# Findings of `bertfit check`, computed from compact per-row arrays (see datacheck.DataChecker): "exact" and "norm"
# are uint64 hashes of each usable row's text and normalised text, "label" the label codes (-1: not tracked).

EXAMPLES = 3  # examples shown per finding
LEAK_ERROR_SHARE = 0.01  # validation/test rows whose exact text is in train: above this share, scores mislead
DUPLICATE_WARN_SHARE = 0.01  # extra copies of texts, as a share of the split's rows
IMBALANCE_WARN = 10.0  # largest class / smallest class
SHARD_DOMINANT = 0.9  # one label holds at least this share of a shard's rows...
SHARD_OVERALL = 0.5  # ...while its share of the whole split is below this
CONTROL_CHARS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"  # C0 and C1 controls and DEL, except \t \n \r
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


def normalise(texts: pd.Series) -> pd.Series:
    """The form in which near-duplicates compare equal: Unicode NFKC, casefolded, every run of characters that are
    not letters, combining marks or digits (punctuation, symbols, emoji, underscores, whitespace) replaced by one
    space, ends stripped. So 'Great movie!!', ' great  MOVIE ' and 'great-movie' are the same text."""
    folded = _arrow(texts.str.normalize("NFKC").str.casefold())
    spaced = pc.replace_substring_regex(folded, r"[^\p{L}\p{M}\p{N}]+", " ")  # RE2: Unicode classes, vectorised
    return pd.Series(pc.utf8_trim(spaced, " ").to_numpy(zero_copy_only=False), index=texts.index, dtype=object)


def text_hashes(texts: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of each text and of its normalised form; a text that normalises to nothing keeps its own."""
    exact = pd.util.hash_array(texts.to_numpy(dtype=object))
    normal = normalise(texts)
    norm = pd.util.hash_array(normal.to_numpy(dtype=object))
    return exact, np.where((normal == "").to_numpy(dtype=bool), exact, norm)


def encoding_problems(texts: pd.Series) -> dict[str, np.ndarray]:
    """Masks of texts with U+FFFD replacement characters, with mojibake (ftfy's detector, run on non-ASCII texts
    only, as mojibake needs non-ASCII characters) and with control characters other than tab and newlines."""
    from ftfy.badness import is_bad

    arrow = _arrow(texts)
    mojibake = np.zeros(len(texts), dtype=bool)
    candidates = np.flatnonzero(_matches(arrow, r"[^\x00-\x7f]"))
    mojibake[candidates] = [is_bad(t) for t in texts.iloc[candidates]]
    return {
        "replacement_characters": _matches(arrow, "\ufffd"),
        "mojibake": mojibake,
        "control_characters": _matches(arrow, CONTROL_CHARS),
    }


def _arrow(texts: pd.Series) -> pa.Array:
    return pa.array(texts.to_numpy(dtype=object), type=pa.large_string())


def _matches(texts: pa.Array, pattern: str) -> np.ndarray:
    return pc.match_substring_regex(texts, pattern).to_numpy(zero_copy_only=False).astype(bool)


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


def problem_at(code: str, text: str) -> int:
    """Where the encoding problem `code` first occurs in a text, so that an example can show it."""
    from ftfy.badness import BADNESS_RE  # the pattern behind ftfy.badness.is_bad

    match = BADNESS_RE.search(text) if code == "mojibake" else re.search(PROBLEM_PATTERNS.get(code, "$^"), text)
    return match.start() if match else 0


PROBLEM_PATTERNS = {"replacement_characters": "\ufffd", "control_characters": CONTROL_CHARS}


def show(text: str, width: int = 60, at: int = 0) -> str:
    """A text, cut to about `width` characters around position `at`, quoted with escapes visible."""
    start = max(0, min(at - width // 3, len(text) - width))
    part = text[start : start + width]
    return repr(("…" if start else "") + part + ("…" if start + width < len(text) else ""))


def short_name(source: str) -> str:
    return Path(source).name or source
