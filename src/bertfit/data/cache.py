"""Training data at any size: tokenized once into a memory-mapped Arrow cache, then visited in a fresh global order
every epoch, grouped by length.

The cache is an Arrow IPC stream (the format of Hugging Face `datasets` cache files; `datasets.Dataset.from_file`
opens it) with columns `input_ids`, `length` and `label_code`, plus `type_start` for sentence pairs (where the
second segment starts) and `doc` for sliding windows (the document each window row belongs to). It is keyed by a
fingerprint of the input files (path, size, modification time) or of the DataFrame's contents, the tokenizer, the
columns, the max length and the label and window settings, so a second run on the same data starts training at
once and changed data is tokenized again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from transformers import PreTrainedTokenizerBase

from bertfit.config import DataConfig
from bertfit.data.io import data_files, require_columns, windows
from bertfit.data.locks import building
from bertfit.data.paths import input_fingerprint
from bertfit.data.rows import DataSource, labels_look_like_text, no_usable_rows, report_dropped, usable_rows
from bertfit.data.write import write_json
from bertfit.errors import DataError
from bertfit.labels import LabelCodes, LabelSchema
from bertfit.tokenization import Encoded, WindowEncoder

logger = logging.getLogger(__name__)

CACHE_FORMAT = 4  # 2: CSV columns read as text; 3: pairs, windows, sets; 4: CSV values never typed, read
# options, and multi-label rows with an empty label cell kept (no labels), not dropped
TOKENS_FILE = "tokens.arrow"
META_FILE = "meta.json"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where tokenized data lives: `cache_dir`, else $BERTFIT_CACHE, else $XDG_CACHE_HOME/bertfit, else ~/.cache."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("BERTFIT_CACHE"):
        return Path(os.environ["BERTFIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bertfit"


@dataclass
class TokenizedData:
    """Every usable row of one labelled source: token ids (memory-mapped), lengths and label ids.

    With sliding windows a row is one window of a document and `docs` names the document of each row."""

    source: str
    table: pa.Table  # input_ids: list<int32>, length: int32, label_code: int32 (memory-mapped chunks)
    lengths: np.ndarray  # (rows,) int32
    labels: np.ndarray  # (rows,) int64 ids in the label schema; multi-label: (rows, labels) uint8 multi-hot
    dropped: dict[str, int]
    truncated: int
    folder: Path
    docs: np.ndarray | None = None  # (rows,) int64 document index, sliding windows only

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def n_docs(self) -> int:
        return len(self) if self.docs is None else (int(self.docs[-1]) + 1 if len(self.docs) else 0)


def tokenize_labelled(
    data: DataSource,
    cfg: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    cache_dir: str | Path | None = None,
    schema: LabelSchema | None = None,
    role: str = "training",
    known_from: str = "the training data",
    progress: bool = False,
) -> tuple[TokenizedData, LabelSchema]:
    """Tokenized rows of a file, folder of shards or DataFrame, from the cache or built into it in one pass.

    Rows without text or label are dropped and counted. Without `schema`, the label schema is built from the labels
    seen; with it, labels it does not know are an error.
    """
    source = data if isinstance(data, pd.DataFrame) else data_files(data)
    name = role if isinstance(data, pd.DataFrame) else str(data)
    key = _fingerprint(source, cfg, tokenizer, max_length)
    folder = cache_root(cache_dir) / "tokens" / key
    cached = (folder / META_FILE).is_file()
    if not cached:
        with building(folder, name):  # a run in parallel building the same cache is waited for, then read
            cached = (folder / META_FILE).is_file()
            if not cached:
                encoder = WindowEncoder(tokenizer, max_length, cfg.long, cfg.window_stride)
                _build(source, name, cfg, encoder, folder, progress)
                release_freed_memory()
    if cached:
        logger.info("%s: using tokenized rows cached in %s", name, folder)
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    report_dropped(name, meta["rows_read"], meta["dropped"])
    _report_no_labels(name, meta)
    if not meta["label_values"]:
        raise no_usable_rows(name, meta["rows_read"], meta["dropped"], cfg.label_col)
    codes = LabelCodes.from_meta(meta)
    if schema is None:
        schema = codes.schema(cfg.label_map, cfg.label_sep, name, cfg.label_col)
    table = pa.ipc.open_stream(pa.memory_map(str(folder / TOKENS_FILE))).read_all()
    labels = codes.label_ids(schema, name, cfg.label_col, known_from)[_column(table, "label_code").astype(np.int64)]
    lengths = _column(table, "length")
    docs = _column(table, "doc").astype(np.int64) if "doc" in table.column_names else None
    data = TokenizedData(name, table, lengths, labels, meta["dropped"], meta["truncated"], folder, docs)
    return data, schema


def release_freed_memory() -> None:
    """Hand memory freed after tokenizing back to the OS before training starts.

    Building the cache frees gigabytes in small pieces: Arrow's allocator keeps them for reuse and glibc keeps them
    in its per-thread heaps, so the process would carry them through training (about 800 MiB on 10M rows).
    """
    pa.default_memory_pool().release_unused()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to trim
        pass


def _fingerprint(
    source: list[Path] | pd.DataFrame, cfg: DataConfig, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> str:
    spec = {
        "format": CACHE_FORMAT,
        "input": input_identity(source, cfg),
        "text_cols": cfg.text_cols,
        "label_col": cfg.label_col,
        "max_length": max_length,
        "pair_col": cfg.pair_col,
        "labels": [cfg.is_multi_label, cfg.label_sep],
        "long": [cfg.long, cfg.window_stride if cfg.long == "sliding" else None],
        "tokenizer": _tokenizer_hash(tokenizer),
        "read": [cfg.columns, cfg.quoting, cfg.encoding],
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]


def input_identity(source: list[Path] | pd.DataFrame, cfg: DataConfig) -> Any:
    """What identifies labelled input for a cache: files' paths, sizes and times, or a DataFrame's contents."""
    if isinstance(source, pd.DataFrame):
        require_columns(source, [*cfg.read_as_text, cfg.label_col], "the DataFrame")
        columns = source[[*cfg.read_as_text, cfg.label_col]].astype(str)
        return hashlib.sha256(pd.util.hash_pandas_object(columns, index=False).to_numpy().tobytes()).hexdigest()
    return input_fingerprint(source)


def _tokenizer_hash(tokenizer: PreTrainedTokenizerBase) -> str:
    if tokenizer.is_fast:
        spec = json.loads(tokenizer.backend_tokenizer.to_str())
        spec.pop("truncation", None), spec.pop("padding", None)  # call settings that the last call left behind
        text = json.dumps(spec, sort_keys=True)
    else:
        text = json.dumps(sorted(tokenizer.get_vocab().items())) + type(tokenizer).__name__
    return hashlib.sha256(text.encode()).hexdigest()


def _build(
    source: list[Path] | pd.DataFrame, name: str, cfg: DataConfig, encoder: WindowEncoder, folder: Path, progress: bool
) -> None:
    """One streaming pass: read a window, drop unusable rows, tokenize (the Rust tokenizer uses every core), append."""
    for stale in folder.parent.glob(f".{folder.name}.tmp-*"):  # left by killed builds (the caller holds the lock)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True)
    labels = LabelCodes(cfg.is_multi_label, cfg.label_sep or ",")
    stats = {"rows": 0, "empty text": 0, "missing label": 0, "truncated": 0, "docs": 0}
    fields = [("input_ids", pa.list_(pa.int32())), ("length", pa.int32()), ("label_code", pa.int32())]
    if cfg.pair_col and encoder.type_ids:
        fields.append(("type_start", pa.int32()))
    if cfg.long == "sliding":
        fields.append(("doc", pa.int64()))
    schema = pa.schema(fields)
    frames = windows(source, cfg.read_as_text, cfg.read_options, "the DataFrame", f"tokenizing {Path(name).name}",
                     progress)  # fmt: skip
    try:
        with pa.OSFile(str(tmp / TOKENS_FILE), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for frame, path in frames:
                texts, raw = _usable(frame, path, cfg, stats)
                if len(texts):
                    codes = labels.add(raw)
                    _check_distinct(labels, name, cfg.label_col, stats["rows"])  # before tokenizing a text column
                    writer.write_batch(_tokenize(texts.tolist(), codes, encoder, stats, schema))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        frames.close()  # closes the progress bar
    stats.pop("docs")
    meta = {"format": CACHE_FORMAT, "source": name, **labels.to_meta(), "truncated": stats.pop("truncated")}
    meta.update(rows_read=stats.pop("rows"), dropped=stats)
    write_json(meta, tmp / META_FILE)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    logger.info("%s: tokenized %d rows into %s", name, meta["rows_read"] - sum(stats.values()), folder)


def _usable(frame: pd.DataFrame, path: str, cfg: DataConfig, stats: dict[str, int]) -> tuple[pd.Series, pd.Series]:
    """The window's usable texts and raw labels; rows read and dropped are counted in `stats`."""
    texts, raw, dropped = usable_rows(frame, cfg, path)
    stats["rows"] += len(frame)
    for why, count in dropped.items():
        stats[why] += count
    return texts, raw


def _tokenize(
    texts: list[Any], codes: np.ndarray, encoder: WindowEncoder, stats: dict[str, int], schema: pa.Schema
) -> pa.RecordBatch:
    """One window's rows as a record batch of the cache (one row per window of a document, with sliding windows)."""
    encoded = encoder(texts)
    stats["truncated"] += encoded.truncated
    columns = {"input_ids": encoded.ids, "length": encoded.lengths, "label_code": codes}
    if encoded.docs is not None:  # one row per window; each carries its document's label
        columns["label_code"] = codes[encoded.docs]
        columns["doc"] = encoded.docs + stats["docs"]
    if "type_start" in schema.names:
        columns["type_start"] = encoded.type_starts
    stats["docs"] += len(texts)
    return pa.RecordBatch.from_arrays([pa.array(columns[f.name], type=f.type) for f in schema], schema=schema)


def _check_distinct(labels: LabelCodes, source: str, column: str, rows_so_far: int) -> None:
    """A label column with about as many values as rows holds text: stop before tokenizing all of it."""
    distinct = len(labels.members())
    if distinct > max(20, rows_so_far // 2):
        raise labels_look_like_text(source, column, distinct, rows_so_far)


def _column(table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    if column.num_chunks == 1:
        return column.chunk(0).to_numpy()
    return np.concatenate([chunk.to_numpy() for chunk in column.chunks]) if column.num_chunks else np.empty(0, np.int32)


def _report_no_labels(source: str, meta: dict[str, Any]) -> None:
    """Multi-label: how many rows have an empty set of labels (they teach the model to mark none)."""
    if meta.get("multi_label") and "" in meta["label_values"]:
        count = meta["label_counts"][meta["label_values"].index("")]
        logger.info("%s: %d rows have no labels (negative for every label)", source, count)


class TokenizedRows(torch.utils.data.Dataset):
    """Some rows of a TokenizedData as the dicts Trainer's padding collator takes; reads only the rows asked for."""

    def __init__(self, data: TokenizedData, rows: np.ndarray | None = None) -> None:
        self.data = data
        self.rows = np.arange(len(data)) if rows is None else np.asarray(rows, dtype=np.int64)
        chunks = data.table.column("input_ids").chunks
        self._ids = [(chunk.offsets.to_numpy(), chunk.values.to_numpy()) for chunk in chunks]  # zero-copy views
        self._starts = np.cumsum([0] + [len(chunk) for chunk in chunks])
        names = data.table.column_names
        self._type_starts = _column(data.table, "type_start") if "type_start" in names else None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def lengths(self) -> np.ndarray:
        return self.data.lengths[self.rows]

    @property
    def labels(self) -> np.ndarray:
        return self.data.labels[self.rows]

    @property
    def docs(self) -> np.ndarray | None:
        return None if self.data.docs is None else self.data.docs[self.rows]

    def encoded(self) -> Encoded:
        """These rows as a Scorer takes them: token ids read from the cache as each batch needs them."""
        starts = None if self._type_starts is None else self._type_starts[self.rows].astype(np.int64)
        return Encoded(_RowIds(self), self.lengths.astype(np.int64), 0, starts, self.docs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = int(self.rows[i])
        chunk = int(np.searchsorted(self._starts, row, side="right")) - 1
        offsets, values = self._ids[chunk]
        j = row - int(self._starts[chunk])
        ids = values[offsets[j] : offsets[j + 1]].tolist()
        label = self.data.labels[row]
        item = {"input_ids": ids, "labels": label.astype(np.float32).tolist() if label.ndim else int(label)}
        if self._type_starts is not None:
            start = int(self._type_starts[row])
            item["token_type_ids"] = [0] * start + [1] * (len(ids) - start)
        return item


class _RowIds:
    """The token ids of TokenizedRows, row by row on use (an Encoded's `ids` without a copy of the cache)."""

    def __init__(self, rows: TokenizedRows) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> list[int]:
        return self.rows[int(i)]["input_ids"]


def split_rows(
    labels: np.ndarray, fraction: float, max_rows: int, seed: int, source: str, docs: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices for training and validation: a share (at most max_rows) split off, stratified by label when
    every label has at least two rows (single-label only; label sets are split at random).

    With `docs` (sliding windows), whole documents are split off, so no document has windows on both sides."""
    from sklearn.model_selection import train_test_split

    if docs is not None:
        firsts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])  # each document's first window
        train_docs, val_docs = split_rows(labels[firsts], fraction, max_rows, seed, source)
        return np.flatnonzero(np.isin(docs, train_docs)), np.flatnonzero(np.isin(docs, val_docs))
    n_val = min(int(np.ceil(len(labels) * fraction)), max_rows)
    if len(labels) - n_val < 2:
        raise DataError(f"{source}: only {len(labels)} usable rows; too few to split off validation rows")
    if n_val < int(np.ceil(len(labels) * fraction)):
        logger.info("%s: validating on %d split-off rows (val_max_rows)", source, n_val)
    stratify = None
    if labels.ndim == 1:
        counts = np.bincount(labels)
        stratify = labels if counts[counts > 0].min() >= 2 and n_val >= len(np.unique(labels)) else None
        if stratify is None:
            logger.warning("%s: some labels are too rare to stratify the validation split; splitting at random", source)
    rows = np.arange(len(labels))
    train_rows, val_rows = train_test_split(rows, test_size=n_val, random_state=seed, stratify=stratify)
    return np.sort(train_rows), np.sort(val_rows)
