"""select(): the unlabelled rows most worth labelling next, scored by a trained model.

The pool is labelled by the resumable streaming prediction (`Classifier.predict_file`) into a hidden Parquet file
beside the output, so a big pool never sits in memory and a killed run continues where it stopped. Then one pass
over the scores ranks the rows by the strategy, one pass over the pool takes the picked rows' input columns (read
as the predict path reads them, so JSON Lines values come back as the same JSON), and the output is written whole
under its name:

- margin: the smallest gap between the two most likely labels first. Multi-label models: the smallest
  |2p - 1| over the labels (p nearest 0.5 first; for two labels this is the same gap).
- entropy: the highest entropy of the label distribution first (multi-label: the sum of the labels' binary
  entropies).
- random: a uniform random sample (`seed`).
- diverse: the `diverse_factor * n` rows of smallest margin, then `n` of them spread out over the model's own
  embedding space by k-center greedy, starting from the most uncertain one, so that the picks are not near-copies.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bertfit.data.io import PLAIN, WINDOW_ROWS, ReadOptions, arrow_to_pandas, data_files, iter_frames
from bertfit.data.jsonlines import RAW_JSON
from bertfit.data.paths import check_not_input, model_files
from bertfit.data.rows import input_texts
from bertfit.data.write import write_table
from bertfit.errors import ConfigError, DataError
from bertfit.prediction.classifier import Classifier, clean_input
from bertfit.prediction.decoder import MULTI_COLUMNS, OUTPUT_COLUMNS
from bertfit.prediction.parts import OutputLock, check_output, is_folder_output
from bertfit.reviewing.embeddings import embed, k_center_greedy

logger = logging.getLogger(__name__)

STRATEGIES = ("margin", "entropy", "random", "diverse")
SCORE_COLUMN = {"margin": "margin", "entropy": "entropy", "random": "random", "diverse": "margin"}
ADDED = ("row", "margin", "entropy", "random", "coverage_distance")
READ_BATCH = 65_536


def select(
    model_dir: str | Path,
    pool: str | Path,
    output: str | Path,
    n: int = 500,
    strategy: str = "margin",
    seed: int = 0,
    diverse_factor: int = 10,
    text_cols: list[str] | None = None,
    dtype: str = "auto",
    batch_tokens: int | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    read: ReadOptions | None = None,
    engine: str = "auto",
    allow_pickle: bool = False,
) -> dict[str, Any]:
    """Pick the `n` unlabelled rows of `pool` most worth labelling and write them to `output`, best first.

    The output keeps every input column as it was given (CSV values stay their text), plus `row` (the 0-based
    position in the pool), the strategy's score (`margin`, `entropy` or `random`; diverse: `margin` and
    `coverage_distance`, the cosine distance to the nearest earlier pick), pred_label and pred_score
    (multi-label: pred_labels) and a prob_<label> column per label. Rows with empty text are never picked. See the
    module docstring for the strategies. A killed run resumes its scoring when run again with the same arguments.

    Returns a summary: rows in the pool, usable rows, rows picked, the strategy and the output.
    """
    _check_arguments(n, strategy, diverse_factor)
    pool, output = Path(pool), Path(output)
    _check_output(output, pool, model_dir)
    files = data_files(pool)
    with OutputLock(output, "bertfit select"):
        clf = Classifier.from_pretrained(model_dir, dtype=dtype, engine=engine, allow_pickle=allow_pickle)
        if strategy == "diverse" and clf.scorer.model is None:  # an exported folder (auto may move a torch one)
            raise ConfigError(f"{model_dir}: --strategy diverse needs the torch engine, not {clf.engine}; pass "
                              "--engine torch on a model folder with weights, or pick another strategy")  # fmt: skip
        _check_columns(files[0], clf, text_cols, read or PLAIN)
        scores = scores_path(output)
        clf.predict_file(pool, scores, text_cols, probs=True, batch_tokens=batch_tokens, batch_size=batch_size,
                         progress=progress, read=read)  # fmt: skip
        ranked = rank(scores, clf, strategy, n, seed, diverse_factor, text_cols)
        if not ranked.attrs["usable"]:
            scores.unlink(missing_ok=True)
            cols = ", ".join(f"'{c}'" for c in text_cols or clf.text_cols)
            raise DataError(f"{pool}: every row's text ({cols}) is empty; nothing to pick; name the text column "
                            "with --text-col")  # fmt: skip
        frame = picked_rows(files, scores, ranked, clf, text_cols, read or PLAIN)
        write_table(frame, output)
        scores.unlink(missing_ok=True)
    logger.info("%s: wrote %d rows picked by %s", output, len(frame), strategy)
    return {"pool_rows": ranked.attrs["rows"], "usable_rows": ranked.attrs["usable"], "picked": len(frame),
            "empty_text": ranked.attrs["rows"] - ranked.attrs["usable"], "strategy": strategy,
            "output": str(output)}  # fmt: skip


def scores_path(output: Path) -> Path:
    """The hidden Parquet file beside `output` that holds every pool row with its probabilities while a run lasts."""
    return output.parent / f".{output.name}.bertfit-scores.parquet"


def rank(
    scores: Path, clf: Classifier, strategy: str, n: int, seed: int = 0, diverse_factor: int = 10,
    text_cols: list[str] | None = None,
) -> pd.DataFrame:  # fmt: skip
    """The picked rows, best first: a frame of `row` plus the strategy's score columns (attrs: rows, usable)."""
    prob_cols = [f"prob_{name}" for name in clf.labels]
    multi = clf.schema.multi_label
    values = {"margin": [], "entropy": []}
    for batch in pq.ParquetFile(scores).iter_batches(batch_size=READ_BATCH, columns=prob_cols):
        proba = np.column_stack([batch.column(c).to_numpy(zero_copy_only=False) for c in prob_cols])
        values["margin"].append(margin(proba, multi))
        values["entropy"].append(entropy(proba, multi))
    table = pd.DataFrame({k: np.concatenate(v) if v else np.empty(0) for k, v in values.items()})
    table.insert(0, "row", np.arange(len(table), dtype=np.int64))
    usable = table[table["margin"].notna()]
    rows, empty = len(table), len(table) - len(usable)
    if empty:
        logger.warning("%s rows of %d have empty text and are never picked", empty, rows)
    if n > len(usable):
        logger.warning("asked for %d rows; the pool has %d usable rows: taking them all", n, len(usable))
    picked = _pick(usable, strategy, n, seed, diverse_factor, clf, scores, text_cols or clf.text_cols)
    picked.attrs = {"rows": rows, "usable": len(usable)}
    return picked


def margin(proba: np.ndarray, multi_label: bool) -> np.ndarray:
    """Per row: top-1 minus top-2 probability (multi-label: the smallest |2p - 1| over labels); NaN stays NaN."""
    if multi_label:
        return np.abs(2.0 * proba - 1.0).min(axis=1)
    if proba.shape[1] < 2:
        return np.abs(2.0 * proba[:, 0] - 1.0)
    top = np.sort(proba, axis=1)
    return top[:, -1] - top[:, -2]


def entropy(proba: np.ndarray, multi_label: bool) -> np.ndarray:
    """Per row, in nats: the entropy of the label distribution (multi-label: the sum of binary entropies)."""
    p = np.clip(proba.astype(np.float64), 1e-12, 1.0)
    if multi_label:
        q = np.clip(1.0 - proba.astype(np.float64), 1e-12, 1.0)
        return -(p * np.log(p) + q * np.log(q)).sum(axis=1)
    return -(p * np.log(p)).sum(axis=1)


def picked_rows(
    files: list[Path], scores: Path, ranked: pd.DataFrame, clf: Classifier, text_cols: list[str] | None,
    read: ReadOptions,
) -> pd.DataFrame:  # fmt: skip
    """The pool rows named by `ranked["row"]`, in that order: every input column as the predict path reads it,
    then `ranked`'s columns, then the prediction columns from the scores file."""
    rows = ranked["row"].to_numpy()
    inputs = pool_rows(files, rows, clf.columns_read(text_cols), read)
    multi = clf.schema.multi_label
    predictions = [*(MULTI_COLUMNS if multi else OUTPUT_COLUMNS), *(f"prob_{name}" for name in clf.labels)]
    out = pd.concat([inputs, ranked.reset_index(drop=True), scored_rows(scores, rows, predictions)], axis=1)
    out.attrs = dict(inputs.attrs)  # JSON Lines: which columns hold raw JSON, written back as it was
    return out


def pool_rows(files: list[Path], rows: np.ndarray, text_cols: list[str], read: ReadOptions) -> pd.DataFrame:
    """The pool's rows at positions `rows` (0-based over its files in order), in that order, read as the predict
    path reads them: CSV values as their text, JSON Lines values as their raw JSON (named in attrs)."""
    wanted = np.sort(rows)
    pieces, raw, start = [], set(), 0
    for path in files:
        for frame in iter_frames(path, WINDOW_ROWS, text_cols, read, passthrough=True):
            lo, hi = np.searchsorted(wanted, [start, start + len(frame)])
            if hi > lo or not pieces:  # the first window also gives the columns of an empty result
                pieces.append(frame.iloc[wanted[lo:hi] - start])
                raw.update(frame.attrs.get(RAW_JSON, ()))
            start += len(frame)
    frame = pd.concat(pieces) if len(pieces) > 1 else pieces[0]
    frame.index = wanted
    frame = frame.loc[rows].reset_index(drop=True)
    frame.attrs = {RAW_JSON: sorted(raw)} if raw else {}
    return frame


def scored_rows(scores: Path, rows: np.ndarray, columns: list[str] | None = None) -> pd.DataFrame:
    """The scores file's rows at positions `rows`, in that order (only `columns`, when given)."""
    wanted = np.sort(rows)
    tables, start = [], 0
    for batch in pq.ParquetFile(scores).iter_batches(batch_size=READ_BATCH, columns=columns):
        lo, hi = np.searchsorted(wanted, [start, start + batch.num_rows])
        if hi > lo:
            tables.append(pa.Table.from_batches([batch]).take(pa.array(wanted[lo:hi] - start)))
        start += batch.num_rows
    schema = pq.read_schema(scores)
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    frame = arrow_to_pandas(pa.concat_tables(tables) if tables else schema.empty_table())
    frame.index = wanted
    return frame.loc[rows].reset_index(drop=True)


def _pick(
    usable: pd.DataFrame, strategy: str, n: int, seed: int, diverse_factor: int, clf: Classifier, scores: Path,
    text_cols: list[str],
) -> pd.DataFrame:  # fmt: skip
    if strategy == "random":
        draws = np.random.default_rng(seed).random(len(usable))
        return usable[["row"]].assign(random=draws).sort_values("random", kind="stable").head(n)
    if strategy == "entropy":
        return _top(usable, "entropy", n, ascending=False)[["row", "entropy"]]
    candidates = _top(usable, "margin", n * diverse_factor if strategy == "diverse" else n, ascending=True)
    if strategy == "margin" or len(candidates) <= n:
        return candidates[["row", "margin"]]
    texts = _texts(scores, candidates["row"].to_numpy(), clf, text_cols)
    vectors = embed(clf.scorer, texts, clf.default_batch_tokens())
    order, gaps = k_center_greedy(vectors, n, first=0)  # candidates are sorted: 0 is the most uncertain
    return candidates[["row", "margin"]].iloc[order].assign(coverage_distance=gaps)


def _top(usable: pd.DataFrame, column: str, k: int, ascending: bool) -> pd.DataFrame:
    """The k best rows by `column` (ties: the earlier row first), sorted best first."""
    key = usable[column].to_numpy() * (1 if ascending else -1)
    return usable.iloc[np.lexsort((usable["row"].to_numpy(), key))[:k]]


def _texts(scores: Path, rows: np.ndarray, clf: Classifier, text_cols: list[str]) -> list[Any]:
    """The model inputs of some rows of the scores file, in the order of `rows`."""
    frame = scored_rows(scores, rows, clf.columns_read(text_cols))
    texts, _ = input_texts(frame, text_cols, clf.pair_col, str(scores))
    return [clean_input(t) for t in texts.tolist()]


def _check_arguments(n: int, strategy: str, diverse_factor: int) -> None:
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)} (got '{strategy}')")
    if n < 1:
        raise ConfigError(f"--n must be at least 1 (got {n}); give how many rows to pick, e.g. --n 500")
    if diverse_factor < 1:
        raise ConfigError(f"--diverse-factor must be at least 1 (got {diverse_factor}); try 10")


def _check_output(output: Path, pool: Path, model_dir: str | Path) -> None:
    if is_folder_output(output):
        raise DataError(f"{output}: select writes one table; give a file name such as to_label.csv")
    check_not_input(output, [pool, *model_files(model_dir)])
    check_output(output)


def _check_columns(first: Path, clf: Classifier, text_cols: list[str] | None, read: ReadOptions) -> None:
    """Refuse a pool whose columns clash with the ones select adds, before any scoring."""
    frame = next(iter_frames(first, 1, clf.columns_read(text_cols), read, passthrough=True))
    clash = [c for c in ADDED if c in frame.columns]
    if clash:
        raise DataError(f"{first}: already has a column '{clash[0]}'; rename or drop it before selecting")
