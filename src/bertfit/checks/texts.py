"""What `bertfit check` computes from texts: hashes of each text and of its normalised form, encoding problems,
bounded samples of a stream of texts, and texts cut and quoted to show in a finding."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

CONTROL_CHARS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"  # C0 and C1 controls and DEL, except \t \n \r


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


class Reservoir:
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


class TextSample:
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
