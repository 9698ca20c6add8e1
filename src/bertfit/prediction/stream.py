"""Streams of tables through a Scorer and a Decoder, and the resumable job that labels a whole file.

The pipeline for files: read windows of rows (io.iter_frames) -> tokenize a window in one call to the Rust
tokenizer, in a background thread while the model scores the previous window -> sort the window by token length
and cut batches by a token budget -> forward under torch.inference_mode() in the fastest correct dtype -> put rows
back in input order -> commit the window as a part of the output (parts.PartWriter), so a rerun resumes.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from bertfit.data.io import WINDOW_ROWS, ReadOptions, count_rows, data_files, estimate_rows, iter_frames
from bertfit.data.paths import input_fingerprint
from bertfit.data.rows import input_texts
from bertfit.errors import BertfitError
from bertfit.prediction.decoder import Decoder
from bertfit.prediction.parts import PartWriter, check_output
from bertfit.prediction.scorer import Scorer
from bertfit.tokenization import Encoded

logger = logging.getLogger(__name__)

DEFAULT_WINDOW = WINDOW_ROWS  # rows sorted together: long enough that neighbours in length order are near-equal


def score_window(
    scorer: Scorer, decoder: Decoder, texts: list[Any], encoded: Encoded, batch_tokens: int, batch_size: int | None
) -> np.ndarray:
    """Probabilities for every text of a window (NaN rows where the text is None), in the window's order.

    Sliding windows of all texts are scored together in the same length-sorted batches, then each text's
    window logits are aggregated (mean or max) before the softmax (or the sigmoids, for multi-label)."""
    present = np.fromiter((t is not None for t in texts), dtype=bool, count=len(texts))
    logits = scorer.logits(encoded, batch_tokens, batch_size)
    return decoder.probabilities(logits, encoded.docs, present)


def label_frames(
    scorer: Scorer,
    decoder: Decoder,
    frames: Iterable[pd.DataFrame],
    cols: list[str],
    pair_col: str | None,
    probs: bool,
    batch_tokens: int,
    batch_size: int | None,
    source: str,
) -> Iterator[pd.DataFrame]:
    """`Classifier.predict_stream`: each table with its predictions; the next one is tokenized meanwhile."""
    for frame, texts, encoded in _prefetch(_prepare(scorer, f, cols, pair_col, source) for f in frames):
        proba = score_window(scorer, decoder, texts, encoded, batch_tokens, batch_size)
        out = decoder.with_predictions(frame, proba, probs, source)
        out.attrs = {**frame.attrs, "empty_text": sum(t is None for t in texts), "truncated": encoded.truncated}
        yield out


def predict_file_job(
    label: Callable[[Iterable[pd.DataFrame]], Iterator[pd.DataFrame]],
    input_path: Path,
    output_path: Path,
    settings: dict[str, Any],
    read_cols: list[str],
    read: ReadOptions,
    progress: bool,
    labels: list[str],
) -> dict[str, Any]:
    """Label a file or folder of shards into `output_path` in committed parts, resuming a run with the same input
    and `settings` (which hold the model's identity and the window); `OutputLock(output_path)` must be held.
    `label` is `predict_stream` with the run's arguments. The summary: counts, resumed rows, output, labels, speed."""
    check_output(output_path)  # under the lock: a run that held it before may have filled an output folder
    files = data_files(input_path)
    writer = PartWriter(output_path, {"input": input_fingerprint(files), "settings": settings})
    started, resumed = time.perf_counter(), writer.rows_done
    with progress_bar(estimate_rows(files) if progress else None, progress, initial=resumed) as bar:
        try:
            for frame in label(_remaining_frames(files, settings["window"], writer.parts, read_cols, read)):
                writer.commit(frame, frame.attrs["source"], frame.attrs["empty_text"], frame.attrs["truncated"])
                bar.update(len(frame))
        except BertfitError:
            writer.discard()  # bad input: the parts could never be resumed from once the input is fixed
            raise
    totals = writer.totals()
    writer.finish()
    seconds = time.perf_counter() - started
    speed = round((totals["rows"] - resumed) / max(seconds, 1e-9), 1)
    log_counts(input_path, totals)
    return {**totals, "resumed_rows": resumed, "output": str(output_path), "labels": labels,
            "seconds": round(seconds, 2), "rows_per_s": speed}  # fmt: skip


def weights_stamp(folder: Path | None) -> list[list[Any]]:
    """The model folder's weight, engine and JSON files with their sizes and times (part of what a resumed run must
    match)."""
    if folder is None or not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".json", ".onnx", ".xml"))
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def log_counts(source: str | Path, totals: dict[str, int]) -> None:
    """The summary lines for rows left unscored (empty text) and texts cut at max_length."""
    if totals["empty_text"]:
        logger.warning("%s: %d of %d rows have empty text; their prediction is left empty", source,
                       totals["empty_text"], totals["rows"])  # fmt: skip
    if totals["truncated"]:
        logger.warning("%s: %d of %d texts were longer than max_length and were truncated", source,
                       totals["truncated"], totals["rows"])  # fmt: skip


def progress_bar(total: int | None, enabled: bool, initial: int = 0) -> tqdm:
    return tqdm(total=total, initial=initial, desc="predict", unit=" rows", unit_scale=True, disable=not enabled,
                file=sys.stderr, smoothing=0.1)  # fmt: skip


def _prepare(
    scorer: Scorer, frame: pd.DataFrame, cols: list[str], pair_col: str | None, source: str
) -> tuple[pd.DataFrame, list, Encoded]:
    texts, missing = input_texts(frame, cols, pair_col, source)
    texts = [None if m else t for t, m in zip(texts.tolist(), missing.tolist())]
    return frame, texts, scorer.encode_present(texts)


def _remaining_frames(
    files: list[Path], window: int, done: list[dict[str, Any]], text_cols: list[str], read: ReadOptions
) -> Iterator[pd.DataFrame]:
    """Windows of every file in order, after the `done` ones; each frame's attrs name its source file index."""
    for source, path in enumerate(files):
        parts_done = [p for p in done if p["source"] == source]
        if parts_done and count_rows([path]) == sum(p["rows"] for p in parts_done):
            continue  # a finished shard is not read again
        for i, frame in enumerate(iter_frames(path, window, text_cols, read, passthrough=True)):
            if i >= len(parts_done):
                frame.attrs["source"] = source
                yield frame


def _prefetch(items: Iterator[Any]) -> Iterator[Any]:
    """Run an iterator one item ahead in a background thread (tokenizing overlaps the model's forward).

    At most two items exist at once, the one in use and the next, so memory does not depend on how many there
    are. A thread, not a process: the Rust tokenizer and PyTorch release the GIL, and nothing forks after the
    tokenizer's own thread pool has started.
    """
    ready: queue.Queue = queue.Queue()
    turn = threading.Semaphore(1)  # the producer takes a turn before building an item; the consumer gives one back
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            while _wait_for(turn, stop):
                item = next(items, done)
                ready.put((item, None))
                if item is done:
                    return
        except BaseException as error:  # handed to the consumer, which re-raises it in its own thread
            ready.put((None, error))

    thread = threading.Thread(target=work, name="bertfit-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is done:
                return
            turn.release()  # the next item is built while this one is used
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _wait_for(turn: threading.Semaphore, stop: threading.Event) -> bool:
    while not stop.is_set():
        if turn.acquire(timeout=0.1):
            return True
    return False
