"""The Ray Data pipeline of the ray engine: read the input, label windows of rows in an actor pool, write the output.

Each actor holds one `Classifier` (its Scorer and Decoder, as the local engine's) and labels one window per call
with `Classifier.predict_stream`; rows come back in input order (preserve_order) and are either committed as parts
on the driver (`parts.PartWriter`, a file output) or written as Parquet shards by Ray write tasks (a folder output).
`ray_engine.predict_with_ray` checks the request and starts the cluster, then runs this.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from bertfit.data.io import ReadOptions, arrow_to_pandas, estimate_rows
from bertfit.data.jsonlines import RAW_JSON, raw_members
from bertfit.data.textfiles import arrow_csv_options, header_frame, resolve_quoting
from bertfit.data.write import display_raw_json
from bertfit.errors import BertfitError
from bertfit.prediction.parts import PartWriter, is_folder_output
from bertfit.prediction.stream import log_counts

NOTES = "__bertfit_window__"  # one JSON cell per window (truncated count, dtype, labels); dropped before writing


def _read(ray: Any, files: list[Path], fmt: str, text_cols: list[str], read: ReadOptions) -> Any:
    """A dataset over the input files, in their order, each value as the local engine reads it: CSV/TSV fields as
    their text ("" when empty), JSON Lines values decoded for the text columns and raw JSON text for the others."""

    paths = [str(f) for f in files]
    if fmt == "parquet":
        return ray.data.read_parquet(paths, file_extensions=None)
    if fmt in ("csv", "tsv"):
        names = list(read.columns or header_frame(files[0], fmt, read).columns)  # the header alone is read
        quoting = resolve_quoting(files[0], fmt, read)
        return ray.data.read_csv(
            paths,
            **arrow_csv_options(names, read, fmt, quoting),
            file_extensions=None,
        )
    lines = ray.data.read_text(paths, encoding=read.encoding, drop_empty_lines=True, file_extensions=None)
    return lines.map_batches(_JsonLines, fn_kwargs={"decoded": text_cols}, batch_format="pyarrow", batch_size=4096)


def _JsonLines(batch: pa.Table, decoded: list[str]) -> pa.Table:  # noqa: N802 - a Ray Data map function
    """JSON Lines rows (checked on the driver): decoded values for the columns the model reads, raw JSON text for
    the others (None where a line lacks the key)."""
    rows = [raw_members(line.lstrip("\ufeff")) for line in batch.column("text").to_pylist()]
    names = list(dict.fromkeys(key for row in rows for key in row))
    columns = {
        name: [(row[name][0] if name in decoded else row[name][1]) if name in row else None for row in rows]
        for name in names
    }
    return pa.table({name: pa.array(values, type=None if name in decoded else pa.string())
                     for name, values in columns.items()})  # fmt: skip


def run_pipeline(
    ray: Any, files: list[Path], fmt: str, cols: list[str], read: ReadOptions, plan: dict[str, Any],
    labeller: dict[str, Any], output: Path, progress: bool,
) -> list[dict[str, Any]]:  # fmt: skip
    """Read, label and write; the counts of each written piece, in order."""
    ds = _label(ray, _read(ray, files, fmt, cols, read), plan, labeller)
    if is_folder_output(output):
        return _write_shards(ds, output)
    return _write_file(ds, output, estimate_rows(files) if progress else None, progress)


def _label(ray: Any, ds: Any, plan: dict[str, Any], labeller: dict[str, Any]) -> Any:
    """Cut the rows into windows and label them with an actor pool, one model per actor."""
    return ds.repartition(target_num_rows_per_block=plan["window"]).map_batches(
        _Labeller,
        fn_constructor_kwargs={**labeller, "threads": plan["threads"]},
        batch_format="pyarrow",  # converted by the labeller: integers with gaps stay integers
        batch_size=plan["window"],
        compute=ray.data.ActorPoolStrategy(size=plan["workers"]),
        num_cpus=plan["num_cpus"],
        num_gpus=plan["num_gpus"],
    )


class _Labeller:
    """A Ray Data actor: loads the model once, then labels one window of rows per call."""

    def __init__(self, model_dir: str, device: str, dtype: str, max_length: int | None, compile: bool,
                 calibration: bool, threads: int, raw_json: bool = False, keep_json: bool = False,
                 long: str | None = None, stride: int | None = None, aggregate: str | None = None,
                 threshold: float | None = None, **stream_args: Any) -> None:  # fmt: skip
        import torch

        from bertfit.prediction.classifier import Classifier

        torch.set_num_threads(threads)
        self.stream_args = stream_args
        self.raw_json, self.keep_json = raw_json, keep_json
        self.error: BertfitError | None = None
        try:
            self.clf = Classifier.from_pretrained(
                model_dir,
                device=device,
                dtype=dtype,
                max_length=max_length,
                compile=compile,
                calibration=calibration,
                long=long,
                stride=stride,
                aggregate=aggregate,
                threshold=threshold,
            )
        except BertfitError as error:
            # Raised on the first window: from a call Ray Data passes it to the driver unchanged; from here it
            # would come back as an ActorDiedError holding only a traceback text.
            self.error = error

    def __call__(self, table: pa.Table) -> pd.DataFrame:
        if self.error is not None:
            raise self.error
        batch = arrow_to_pandas(table)
        raw: list[str] = []
        if self.raw_json:
            read = self.clf.columns_read(self.stream_args.get("text_cols"))
            batch.attrs[RAW_JSON] = [c for c in batch.columns if c not in read]
            if not self.keep_json:  # a CSV/Parquet output gets the texts the JSON values stand for
                batch = display_raw_json(batch)
            raw = batch.attrs.get(RAW_JSON, [])
        with closing(self.clf.predict_stream([batch], **self.stream_args)) as stream:
            out = next(stream)
        # Ray Data drops DataFrame.attrs: the window's counts travel in one cell of a column dropped on writing.
        notes = [None] * len(out)
        if notes:
            notes[0] = json.dumps(
                {"truncated": out.attrs["truncated"], "dtype": self.clf.dtype, "labels": self.clf.labels, "raw": raw}
            )
        out[NOTES] = pd.Series(notes, index=out.index, dtype=object)
        return out


def _write_file(ds: Any, output: Path, total: int | None, progress: bool) -> list[dict[str, Any]]:
    """Stream the labelled windows to the driver in order and commit each as a part; assemble when complete."""
    writer = PartWriter(output, {"engine": "ray", "run": uuid.uuid4().hex})  # never resumed: a new key each run
    chunks = []
    bar = tqdm(total=total, desc="predict", unit=" rows", unit_scale=True, disable=not progress, file=sys.stderr)
    try:
        with bar:
            for frame in ds.iter_batches(batch_format="pandas", batch_size=None):
                if len(frame):
                    chunk = _chunk(len(frame), _unscored(frame), frame.pop(NOTES).tolist())
                    frame.attrs[RAW_JSON] = chunk["raw"]
                    writer.commit(frame, 0, chunk["empty_text"], chunk["truncated"])
                    chunks.append(chunk)
                    bar.update(len(frame))
        writer.finish()
    except BaseException:
        writer.discard()
        raise
    return chunks


def _write_shards(ds: Any, output: Path) -> list[dict[str, Any]]:
    """Ray tasks write the shards into a hidden folder beside the output; renamed in order, then into place."""
    staging = output.parent / f".{output.name}.bertfit-ray"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        sink = _shard_sink(staging)
        ds.write_datasink(sink)
        for i, shard in enumerate(sink.shards):
            os.replace(staging / shard["file"], staging / f"part-{i:05d}.parquet")
        if output.exists():
            output.rmdir()  # checked empty before the run began
        os.replace(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [_chunk(shard["rows"], shard["empty_text"], shard["notes"]) for shard in sink.shards]


def _shard_sink(folder: Path) -> Any:
    """A Ray Data sink: each write task's rows, in order, as one Parquet file named by the task's index.

    Not `Dataset.write_parquet`: that writes through pyarrow.dataset.write_dataset with threads and without
    preserve_order, which may reorder the rows inside a file. This sink also returns each shard's counts.
    The class refers to nothing else in bertfit, so that a write task does not import bertfit (seconds per process).
    """
    from ray.data import Datasink
    from ray.data.block import BlockAccessor

    class ShardSink(Datasink):
        def __init__(self) -> None:
            self.shards: list[dict[str, Any]] = []

        @property
        def supports_distributed_writes(self) -> bool:
            return False  # write on the driver's machine, where the folder is renamed into place

        def write(self, blocks: Any, ctx: Any) -> dict[str, Any] | None:
            tables = [t for t in (BlockAccessor.for_block(b).to_arrow() for b in blocks) if t.num_rows]
            if not tables:
                return None
            table = pa.concat_tables(tables, promote_options="permissive")
            name = f"task-{ctx.task_idx:09d}.parquet"
            pq.write_table(table.drop_columns([NOTES]), folder / name)
            notes = table[NOTES].drop_null().to_pylist()
            predicted = "pred_label" if "pred_label" in table.column_names else "pred_labels"  # multi-label
            return {"task": ctx.task_idx, "file": name, "rows": table.num_rows,
                    "empty_text": table[predicted].null_count, "notes": notes}  # fmt: skip

        def on_write_complete(self, write_result: Any) -> None:
            # Task indexes follow the order in which windows reach the write (input order, with preserve_order).
            self.shards = sorted((r for r in write_result.write_returns if r), key=lambda r: r["task"])

    return ShardSink()


def _unscored(frame: pd.DataFrame) -> int:
    """Rows left without a prediction (empty text): pred_label, or a multi-label model's pred_labels, is null."""
    return int(frame["pred_label" if "pred_label" in frame.columns else "pred_labels"].isna().sum())


def _chunk(rows: int, empty_text: int, notes: list[Any]) -> dict[str, Any]:
    """Counts for some labelled rows, from their pred_label and the per-window notes among them."""
    parsed = [json.loads(n) for n in notes if isinstance(n, str)]
    labels = parsed[0]["labels"] if parsed else None
    return {"rows": rows, "empty_text": empty_text, "truncated": sum(p["truncated"] for p in parsed),
            "dtypes": sorted({p["dtype"] for p in parsed}), "labels": labels,
            "raw": parsed[0].get("raw", []) if parsed else []}  # fmt: skip


def summary(
    chunks: list[dict[str, Any]], input_path: Path, output: Path, seconds: float, workers: int, dtype: str
) -> dict[str, Any]:
    totals = {k: sum(c[k] for c in chunks) for k in ("rows", "empty_text", "truncated")}
    dtypes = sorted({d for c in chunks for d in c["dtypes"]}) or [dtype]
    labels = next((c["labels"] for c in chunks if c["labels"]), [])
    log_counts(input_path, totals)
    return {**totals, "resumed_rows": 0, "output": str(output), "labels": labels, "seconds": round(seconds, 2),
            "rows_per_s": round(totals["rows"] / max(seconds, 1e-9), 1), "dtype": "/".join(dtypes),
            "engine": "ray", "workers": workers}  # fmt: skip
