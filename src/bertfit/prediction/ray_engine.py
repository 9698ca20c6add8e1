"""Ray Data engine for prediction: the local engine's labels, with the model replicated over a cluster's CPUs or GPUs.

The pipeline: Ray Data readers -> windows of rows (a streaming repartition) -> an actor pool, one Classifier per actor,
labelling each window with `Classifier.predict_stream` -> rows back in input order (preserve_order) -> either assembled
on the driver by `parts.PartWriter` (a file output, the same atomic assembly as the local engine) or written as
Parquet shards by Ray write tasks (a folder output) and renamed into place when complete. This module checks the
request on the driver and runs the cluster; `ray_pipeline` holds the pipeline itself.

On a cluster of several machines, the input must be on storage every node can read (a shared filesystem).
"""

from __future__ import annotations

import gc
import json
import logging
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import closing, contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

import pyarrow as pa

from bertfit.config import DataConfig
from bertfit.data.io import (
    COMPRESSIONS,
    PLAIN,
    ReadOptions,
    data_files,
    first_line,
    iter_frames,
    table_format,
)
from bertfit.data.paths import check_not_input, model_files
from bertfit.data.rows import join_text
from bertfit.errors import BertfitError, ConfigError, DataError, MissingDependency
from bertfit.modeling import check_precision, read_meta, require_model_dir
from bertfit.prediction.decoder import check_threshold
from bertfit.prediction.parts import OutputLock, check_output, is_folder_output
from bertfit.prediction.ray_pipeline import run_pipeline, summary
from bertfit.prediction.scorer import window_settings

logger = logging.getLogger(__name__)

RAY_WINDOW = 10_000  # rows per actor call: plenty for length-sorted batches, small enough to spread over the actors
ACTOR_START_TIMEOUT_S = 900  # loading a model, or an autoscaling cluster adding a node, can take minutes
# What Ray Data's readers take, and the compressions they detect from the file name (pyarrow.Codec.detect).
_STREAMS = (".gz", ".bz2", ".zst")
RAY_FORMATS = {"parquet": (), "csv": _STREAMS, "tsv": _STREAMS, "jsonl": _STREAMS}


def predict_with_ray(
    model_dir: str | Path, input_path: str | Path, output_path: str | Path, text_cols: list[str] | None = None,
    probs: bool = False, dtype: str = "auto", batch_tokens: int | None = None, batch_size: int | None = None,
    max_length: int | None = None, address: str | None = None, num_workers: int | None = None,
    gpus_per_worker: float = 0.0, progress: bool = False, *, cpus_per_worker: int | None = None,
    window: int | None = None, compile: bool = False, calibration: bool = True, read: ReadOptions | None = None,
    long: str | None = None, stride: int | None = None, aggregate: str | None = None, threshold: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Label every row of a table, or of a folder of shards, with model replicas on a Ray cluster.

    The output is what `bertfit.prediction.classifier.predict_file` writes: all input columns and rows, in order, plus
    pred_label, pred_score and (with `probs`) prob_<label> columns (multi-label models: pred_labels and every
    prob_<label>); it appears only once complete. Pair models read both texts; sliding-window models give one row
    per input row, its windows aggregated. An output path with no extension is a folder that receives Parquet
    shards (part-00000.parquet, ... in input order). A second run into the same output refuses while this one runs.

    Args:
        input_path: a Parquet, CSV, TSV or JSON Lines file, or a folder of such shards.
        address: a running Ray cluster ("auto", "ray://host:10001"); default: start a local one, and stop it after.
            If Ray is already initialized in this process, that cluster is used as it is.
        num_workers: model replicas (default: one per CPU of the cluster, or per GPU with `gpus_per_worker`).
        gpus_per_worker: GPUs per replica; 0 runs on CPUs.
        cpus_per_worker: torch threads per replica (default: the cluster's CPUs shared out between the replicas).
        window: rows labelled together by a replica (default 10,000); texts are length-sorted within a window.
        compile: torch.compile the model in every replica.
        calibration: apply the model's fitted temperature to the scores (see `Classifier.from_pretrained`).
        read: how to read CSV/TSV/JSON Lines input (headerless columns, quoting, encoding); see `io.ReadOptions`.
            Every input value comes back as the local engine gives it back: text files' values as their text.
        long, stride, aggregate, threshold: override what the model was trained with (see `predict_file`).

    Returns:
        The local engine's summary (rows, empty_text, truncated, resumed_rows, output, labels, seconds, rows_per_s,
        dtype) plus engine ("ray") and workers.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    check_not_input(output_path, [input_path, *model_files(model_dir)])
    window = window or RAY_WINDOW
    files, fmt = _check_request(model_dir, input_path, output_path, dtype, gpus_per_worker)
    _check_numbers({"batch_tokens": (batch_tokens, 1), "batch_size": (batch_size, 1), "max_length": (max_length, 2),
                    "num_workers": (num_workers, 1), "cpus_per_worker": (cpus_per_worker, 1), "window": (window, 1),
                    "gpus_per_worker": (gpus_per_worker, 0)})  # fmt: skip
    read_cols = _check_model_settings(model_dir, text_cols, max_length, long, stride, aggregate, threshold)
    labeller = {"model_dir": str(Path(model_dir).resolve()), "device": "cuda" if gpus_per_worker else "cpu",
                "dtype": dtype, "max_length": max_length, "compile": compile, "calibration": calibration,
                "long": long, "stride": stride, "aggregate": aggregate, "threshold": threshold,
                "raw_json": fmt == "jsonl", "keep_json": not is_folder_output(output_path)
                and table_format(output_path) == "jsonl",
                "text_cols": text_cols, "probs": probs,
                "batch_tokens": batch_tokens, "batch_size": batch_size, "source": str(input_path)}  # fmt: skip
    cluster = {"address": address, "num_workers": num_workers, "gpus_per_worker": gpus_per_worker,
               "cpus_per_worker": cpus_per_worker, "window": window}  # fmt: skip
    read = read or PLAIN
    with OutputLock(output_path):  # held until the output is in place: a second run into it refuses at once
        check_output(output_path)  # under the lock: a run that held it before may have filled an output folder
        _check_input(files, fmt, read_cols, read, str(input_path))
        result = _run_on_ray(files, fmt, read_cols, read, labeller, cluster, input_path, output_path, progress)
    if isinstance(result, BertfitError):
        # Ray Data's traceback holds the failed run's actors in a reference cycle until the cycle collector runs;
        # collect now, so that their CPUs go back to a cluster that outlives this call.
        gc.collect()
        raise result
    return result


def _run_on_ray(
    files: list[Path], fmt: str, read_cols: list[str], read: ReadOptions, labeller: dict[str, Any],
    cluster: dict[str, Any], input_path: Path, output_path: Path, progress: bool,
) -> dict[str, Any] | BertfitError:  # fmt: skip
    """Start or join the cluster and run the pipeline: the summary, or the user's error behind Ray's failure."""
    ray = _import_ray()
    try:
        with _ray_session(ray, cluster["address"]), _data_context(ray, progress and is_folder_output(output_path)):
            plan = _plan(ray, cluster["num_workers"], cluster["gpus_per_worker"], cluster["cpus_per_worker"],
                         cluster["window"])  # fmt: skip
            started = time.perf_counter()
            chunks = run_pipeline(ray, files, fmt, read_cols, read, plan, labeller, output_path, progress)
            seconds = time.perf_counter() - started
    except Exception as error:
        user_error = _user_error(error, input_path)
        if user_error is None:
            raise
        return user_error
    return summary(chunks, input_path, output_path, seconds, plan["workers"], labeller["dtype"])


# -- checks on the driver, before Ray starts ----------------------------------------------------------------------


def _check_request(
    model_dir: str | Path, input_path: Path, output_path: Path, dtype: str, gpus_per_worker: float
) -> tuple[list[Path], str]:
    """The input's files and their one format; fails on what Ray Data cannot read, a bad output, model or dtype."""
    check_output(output_path)
    files = data_files(input_path)
    for path in files:
        fmt, compression = table_format(path), path.suffix.lower()
        if fmt not in RAY_FORMATS or (compression in COMPRESSIONS and compression not in RAY_FORMATS[fmt]):
            what = {"excel": "Excel", "hdf5": "HDF5"}.get(fmt, f"{compression}-compressed {fmt.upper()}")
            raise DataError(
                f"{path}: the ray engine reads Parquet, CSV, TSV or JSON Lines, not {what}; "
                "convert it to Parquet, or use --engine local"
            )
    formats = sorted({table_format(f) for f in files})
    if len(formats) > 1:
        raise DataError(f"{input_path}: holds {' and '.join(formats)} files; the ray engine reads one format per run")
    require_model_dir(model_dir)
    check_precision(dtype)  # a bad name fails here; "auto" is resolved by each worker on its own hardware
    if dtype == "fp16" and not gpus_per_worker:
        raise ConfigError("fp16 is for GPUs; on CPU workers use --dtype bf16 or fp32, or give --gpus-per-worker")
    return files, formats[0]


def _check_model_settings(
    model_dir: str | Path, text_cols: list[str] | None, max_length: int | None, long: str | None,
    stride: int | None, aggregate: str | None, threshold: float | None,
) -> list[str]:  # fmt: skip
    """The columns the model reads; fails on bad window settings or threshold before the cluster starts (a replica
    also caps max_length to what its model can take, and checks the stride again against that)."""
    trained = read_meta(model_dir).get("data", {})
    window_settings(trained, max_length or int(trained.get("max_length", 512)), long, stride, aggregate)
    check_threshold(threshold)
    cols = text_cols or trained.get("text_cols", ["text"])
    return DataConfig(text_cols=cols, pair_col=trained.get("pair_col")).read_as_text


def _check_numbers(settings: dict[str, tuple[float | None, int]]) -> None:
    for name, (value, minimum) in settings.items():
        if value is not None and value < minimum:
            raise ConfigError(f"{name} must be at least {minimum} (got {value}); leave it out for the default")


def _check_input(files: list[Path], fmt: str, cols: list[str], read: ReadOptions, source: str) -> None:
    """Fail before the cluster starts on a missing text column, and on CSV/TSV/JSON Lines input that the local
    engine would refuse (lines merged by a quote, ragged rows, lines that are not JSON objects): the whole file
    is read once here, in windows, with the local reader, since Ray Data's readers do not count lines."""
    with closing(iter_frames(files[0], 100, cols, read, passthrough=True)) as frames:
        head = next(frames, None)
    if head is not None:
        join_text(head, cols, source)
    if fmt in ("csv", "tsv", "jsonl"):
        for path in files:
            for _ in iter_frames(path, 100_000, cols, read, passthrough=True):
                pass


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise MissingDependency("ray", "ray", "Prediction with --engine ray") from None
    return ray


# -- the cluster ----------------------------------------------------------------------------------------------


@contextmanager
def _ray_session(ray: Any, address: str | None) -> Iterator[None]:
    """Use the Ray already initialized in this process, else connect to `address` or start a quiet local cluster."""
    if ray.is_initialized():
        yield
        return
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(include_dashboard=False, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as err:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise ConfigError(f"cannot start or reach {where} ({first_line(err)})") from None
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def _data_context(ray: Any, progress: bool) -> Iterator[None]:
    """Ray Data settings for this run (datasets copy them when created), restored afterwards; Ray's driver-side
    messages go to stderr, so that stdout holds only results."""
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.raise_original_map_exception,
             ctx.wait_for_min_actors_s)  # fmt: skip
    ctx.execution_options.preserve_order = True  # output rows in input order
    ctx.enable_progress_bars = progress
    ctx.raise_original_map_exception = True  # a BertfitError in an actor reaches the driver as itself
    # Every replica is up before the first window: else a short run ends while one is still loading, and Ray
    # reports that replica's removal as "a worker died ... by an unexpected system error".
    ctx.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
    data_log, level = logging.getLogger("ray.data"), logging.getLogger("ray.data").level
    data_log.setLevel(logging.CRITICAL)  # Ray Data logs each run's plan; errors come back as exceptions
    try:
        with warnings.catch_warnings(), redirect_stdout(sys.stderr):
            warnings.filterwarnings("ignore", module="ray")
            yield
    finally:
        (ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.raise_original_map_exception,
         ctx.wait_for_min_actors_s) = saved  # fmt: skip
        data_log.setLevel(level)


def _plan(
    ray: Any, num_workers: int | None, gpus_per_worker: float, cpus_per_worker: int | None, window: int
) -> dict[str, Any]:
    """How many replicas, their torch threads, the logical CPUs and GPUs each asks Ray for, rows per call."""
    resources = ray.cluster_resources()
    cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    default = int(gpus // gpus_per_worker) if gpus_per_worker else int(cpus)
    workers = num_workers or max(1, default)
    if workers * gpus_per_worker > gpus:
        raise ConfigError(
            f"{workers} worker(s) with {gpus_per_worker:g} GPU(s) each need {workers * gpus_per_worker:g} GPUs but the "
            f"Ray cluster has {gpus:g}; pass fewer --num-workers, or leave out --gpus-per-worker to run on CPUs"
        )
    threads = cpus_per_worker or max(1, int(cpus // workers))
    # Ray schedules by logical CPUs. An actor pool holding all of them starves Ray Data's read and write tasks and
    # the run never starts, so one is left for those; the threads an actor computes with are set apart from this.
    num_cpus = min(float(threads), max(cpus - 1, 0.0) / workers)
    return {"workers": workers, "threads": threads, "num_cpus": num_cpus, "num_gpus": gpus_per_worker or None,
            "window": window}  # fmt: skip


def _user_error(error: BaseException, input_path: Path) -> BertfitError | None:
    """The BertfitError behind an error Ray raised (an actor's, carried as the cause), or a DataError for input that
    Ray Data's readers could not parse; None for anything else."""
    seen, stack = set(), [(error, False)]
    while stack:
        err, from_ray = stack.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        # Ray's wrapper (an instance of the original's class too) carries the original as its cause.
        wrapper = type(err).__module__.startswith("ray.")
        stack.extend((e, from_ray or wrapper) for e in (getattr(err, "cause", None), err.__cause__, err.__context__))
        if wrapper:
            continue
        if isinstance(err, BertfitError):
            err.args = (first_line(err),)  # Ray Data appends its retry advice to the message
            return err
        if from_ray and isinstance(err, (pa.ArrowInvalid, json.JSONDecodeError)):  # in Ray Data's readers
            return DataError(f"{input_path}: Ray Data cannot read it ({first_line(err)}); convert it to Parquet, "
                             "or use --engine local")  # fmt: skip
    return None
