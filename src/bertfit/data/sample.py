"""The validation sample a model folder keeps: token ids and labels of up to 2,000 validation rows, written at the
end of training, so that `bertfit export --int8` can check an export against the fp32 model on the user's own
labelled data when no --validate file is given.

The rows are stored as the token ids training scored them with (texts are not kept), one Parquet file:
input_ids (list of int32), label (int64; multi-label: a list of 0/1 per label), type_start (pairs: where the second
segment starts) and doc (sliding windows: which document each window belongs to, 0..n-1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bertfit.tokenization import Encoded

VALIDATION_SAMPLE = "validation_sample.parquet"
SAMPLE_ROWS = 2000  # documents: enough to see a 0.5-point drop in agreement, small beside the weights (~100 KB)


def write_validation_sample(folder: Path, rows: Any, seed: int, max_rows: int = SAMPLE_ROWS) -> dict[str, Any]:
    """Write up to `max_rows` validation rows (whole documents, with sliding windows) of `rows` (a TokenizedRows)
    drawn at random with `seed`; returns what bertfit.json records about the file."""
    docs = rows.docs
    doc_of = np.arange(len(rows)) if docs is None else np.unique(docs, return_inverse=True)[1]
    n_docs = int(doc_of.max()) + 1 if len(doc_of) else 0
    chosen = np.sort(np.random.default_rng(seed).choice(n_docs, size=min(n_docs, max_rows), replace=False))
    picked = np.flatnonzero(np.isin(doc_of, chosen))
    items = [rows[int(i)] for i in picked]
    columns: dict[str, Any] = {"input_ids": pa.array([it["input_ids"] for it in items], pa.list_(pa.int32()))}
    first = np.r_[True, doc_of[picked][1:] != doc_of[picked][:-1]] if len(picked) else np.zeros(0, bool)
    labels = rows.labels[picked]
    if labels.ndim == 2:
        columns["label"] = pa.array(labels.astype(np.int8).tolist(), pa.list_(pa.int8()))
    else:
        columns["label"] = pa.array(labels.astype(np.int64))
    if items and "token_type_ids" in items[0]:
        columns["type_start"] = pa.array([_second_start(it["token_type_ids"]) for it in items], pa.int32())
    if docs is not None:
        columns["doc"] = pa.array(np.cumsum(first) - 1, pa.int64())
    pq.write_table(pa.table(columns), folder / VALIDATION_SAMPLE)
    what = ("token ids and labels of validation rows drawn at random, for the accuracy gate of 'bertfit export "
            "--int8'; delete the file before sharing the folder if they are private")  # fmt: skip
    return {"file": VALIDATION_SAMPLE, "rows": len(chosen), "of": n_docs, "what": what}


def read_validation_sample(folder: Path) -> tuple[Encoded, np.ndarray] | None:
    """(the rows as the Scorer takes them, one label row per document), or None when the folder has no sample."""
    path = Path(folder) / VALIDATION_SAMPLE
    if not path.is_file():
        return None
    table = pq.read_table(path)
    ids = table.column("input_ids").to_pylist()
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    names = table.column_names
    starts = table.column("type_start").to_numpy().astype(np.int64) if "type_start" in names else None
    docs = table.column("doc").to_numpy().astype(np.int64) if "doc" in names else None
    labels = table.column("label").to_pylist()
    if docs is not None:
        labels = [labels[i] for i in np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])]
    return Encoded(ids, lengths, 0, starts, docs), np.asarray(labels, dtype=np.int64)


def _second_start(type_ids: list[int]) -> int:
    return next((i for i, t in enumerate(type_ids) if t), len(type_ids))
