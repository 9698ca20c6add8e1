"""Classifier: label texts at the speed of the hardware, from a list in memory or streamed from files of any size.

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from bertfit.config import DataConfig, ModelConfig, check_windows
from bertfit.data.io import PLAIN, ReadOptions, count_rows, data_files, estimate_rows, iter_frames
from bertfit.data.paths import check_not_input, model_files
from bertfit.data.rows import clean_text, input_texts
from bertfit.errors import BertfitError, ConfigError, DataError
from bertfit.labels import LabelSchema
from bertfit.modeling import load_trained, pick_precision
from bertfit.prediction.parts import OutputLock, PartWriter, check_output, input_fingerprint
from bertfit.tokenization import (
    Encoded,
    WindowEncoder,
    aggregate_windows,
    load_tokenizer,
    token_budget_batches,
    usable_max_length,
)

if TYPE_CHECKING:
    from bertfit.explain import Explanation

logger = logging.getLogger(__name__)

DEFAULT_WINDOW = 50_000  # rows sorted together: long enough that neighbours in length order are near-equal
CPU_BATCH_TOKENS = 4096  # best of 1024-16384 on 2 Xeon cores with AMX, by a few %; see docs/benchmarks.md
GPU_BATCH_TOKENS = 65536
OUTPUT_COLUMNS = ("pred_label", "pred_score")
MULTI_COLUMNS = ("pred_labels",)
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class Classifier:
    """A fine-tuned text classifier.

    Example:
        >>> clf = Classifier.from_pretrained("models/emotion")
        >>> clf.predict(["i feel great"])
        [{'label': 'joy', 'score': 0.98}]
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        meta: dict[str, Any],
        device: str,
        dtype: str,
        max_length: int | None = None,
        long: str | None = None,
        stride: int | None = None,
        aggregate: str | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.meta = meta
        self.schema = LabelSchema.from_dict(meta["labels"])
        data = meta.get("data", {})
        self.text_cols: list[str] = list(data.get("text_cols", ["text"]))
        self.pair_col: str | None = data.get("pair_col")
        trained_length = int(data.get("max_length", 512))
        self.max_length = usable_max_length(max_length or trained_length, tokenizer, model.config)
        self.long, self.stride, self.aggregate = window_settings(data, self.max_length, long, stride, aggregate)
        self.device = device
        self.dtype = dtype
        self.encoder = WindowEncoder(tokenizer, self.max_length, self.long, self.stride)
        self.forward: Callable[..., Any] = model
        self.model_dir: Path | None = None
        self.temperature = calibration_temperature(meta)  # 1.0: scores are the plain softmax
        self.thresholds = stored_thresholds(meta, self.schema)  # multi-label: a label is on from its threshold

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        device: str | None = None,
        dtype: str = "auto",
        max_length: int | None = None,
        compile: bool = False,
        allow_pickle: bool = False,
        trust_remote_code: bool = False,
        calibration: bool = True,
        long: str | None = None,
        stride: int | None = None,
        aggregate: str | None = None,
        threshold: float | None = None,
    ) -> Classifier:
        """Load a folder written by `bertfit train` (or any Hugging Face sequence-classification folder).

        Args:
            dtype: "auto" picks bf16 on CPUs with AMX and on GPUs that support it (fp16 on older GPUs), fp32
                elsewhere; or force "fp32", "bf16", "fp16". The weights are cast once, not per batch.
            max_length: tokens kept per text (default: the length the model was trained with).
            compile: run the model through torch.compile (faster on large inputs; compiling takes ~30 s).
            allow_pickle: load pickle weights (pytorch_model.bin) when the folder has no safetensors; loading
                pickle can run code hidden in the file, so only for files from a source you trust.
            calibration: divide the logits by the temperature fitted on the validation split at the end of
                training (stored in bertfit.json), so scores are calibrated probabilities; False: plain softmax.
            long: texts over max_length: "truncate", "head-tail" or "sliding" (default: as in training).
            stride: sliding windows: tokens shared by neighbouring windows (default: as in training, or
                max_length // 4 when `long` is given here).
            aggregate: sliding windows: "mean" or "max" of the windows' logits (default: as in training).
            threshold: multi-label: one threshold for every label in place of the tuned ones.
        """
        if max_length is not None and max_length < 2:
            raise ConfigError(f"max_length must be at least 2 (got {max_length}); try 128")
        model_cfg = ModelConfig(allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        model, meta = load_trained(model_dir, model_cfg)
        tokenizer = load_tokenizer(str(model_dir), trust_remote_code=trust_remote_code)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = pick_precision(dtype, device)
        if dtype == "fp16" and device == "cpu":
            raise ConfigError("fp16 is for GPUs; on a CPU use --dtype bf16 or fp32")
        model = model.to(device=device, dtype=_DTYPES[dtype])
        clf = cls(model, tokenizer, meta, device, dtype, max_length, long, stride, aggregate)
        clf.model_dir = Path(model_dir).resolve()
        if not calibration:
            clf.temperature = 1.0
        if check_threshold(threshold) is not None:
            clf.thresholds = np.full(len(clf.schema), float(threshold))
        if compile:
            clf.forward = torch.compile(model, dynamic=True)
        return clf

    @property
    def labels(self) -> list[str]:
        return list(self.schema.names)

    def default_batch_tokens(self) -> int:
        return CPU_BATCH_TOKENS if self.device == "cpu" else GPU_BATCH_TOKENS

    def predict(
        self,
        texts: Sequence[str] | pd.Series,
        batch_tokens: int | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> list[dict[str, Any]]:
        """The most likely label and its probability for each text; empty texts get label None and score NaN.

        Multi-label models give each text's labels (those at or above their thresholds) and every label's score:
        `{"labels": ["joy", "love"], "scores": {"joy": 0.91, ...}}`. Pair models take (text, second text) tuples.
        """
        proba = self.predict_proba(texts, batch_tokens=batch_tokens, batch_size=batch_size, progress=progress)
        if self.schema.multi_label:
            from bertfit.evaluation.multilabel import label_lists

            return [
                {"labels": labels, "scores": None if labels is None else dict(zip(self.labels, map(float, row)))}
                for labels, row in zip(label_lists(proba, self.thresholds, self.labels), proba)
            ]
        return [
            {"label": None, "score": float("nan")}
            if np.isnan(row[0])
            else {"label": self.schema.names[int(row.argmax())], "score": float(row.max())}
            for row in proba
        ]

    def predict_proba(
        self,
        texts: Sequence[str] | pd.Series,
        batch_tokens: int | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Class probabilities, shape (n_texts, n_labels), columns in `self.labels` order; NaN rows for empty texts.
        Multi-label models give each label's sigmoid score. Long texts give one row each, however many windows.

        Args:
            batch_tokens: padded tokens per batch (default 4096 on CPU, 65536 on GPU).
            batch_size: at most this many texts per batch, whatever their length (default: no limit).
        """
        batch_tokens, batch_size = self.check_batching(batch_tokens, batch_size)
        texts = _as_list(texts)
        proba = np.empty((len(texts), len(self.schema)), dtype=np.float32)
        with _progress_bar(len(texts), progress) as bar:
            for start in range(0, len(texts), DEFAULT_WINDOW):
                window = [clean_input(t) for t in texts[start : start + DEFAULT_WINDOW]]
                encoded = self._encode_present(window)
                proba[start : start + len(window)] = self._score_encoded(window, encoded, batch_tokens, batch_size)
                bar.update(len(window))
        return proba

    def explain(
        self,
        texts: Sequence[str] | pd.Series,
        label: str | None = None,
        n_steps: int = 50,
        internal_batch_size: int | None = None,
        progress: bool = False,
    ) -> list[Explanation]:
        """Word attributions for each text towards `label` (default: its predicted label), by Integrated
        Gradients in fp32; needs `pip install 'bertfit[explain]'`. See `bertfit.explain` for the method."""
        from bertfit.explain import explain_texts

        if self.schema.multi_label or self.pair_col or self.long == "sliding":
            kind = "multi-label" if self.schema.multi_label else "pair" if self.pair_col else "sliding-window"
            raise ConfigError(f"explain works with single-label, single-text models; this is a {kind} model")
        return explain_texts(self.model, self.tokenizer, self.labels, texts, label, n_steps, internal_batch_size,
                             self.max_length, progress, temperature=self.temperature)  # fmt: skip

    def predict_stream(
        self,
        frames: Iterable[pd.DataFrame],
        text_cols: list[str] | None = None,
        probs: bool = False,
        batch_tokens: int | None = None,
        batch_size: int | None = None,
        source: str = "input",
    ) -> Iterator[pd.DataFrame]:
        """Label a stream of tables: each one comes back with its rows in order plus pred_label, pred_score and
        (with `probs`) a prob_<label> column per label. Tokenizing the next table overlaps scoring this one.

        The frame's `attrs` carry `empty_text` and `truncated` counts for its rows.
        """
        batch_tokens, batch_size = self.check_batching(batch_tokens, batch_size)
        cols = text_cols or self.text_cols
        for frame, texts, encoded in _prefetch(self._prepare(f, cols, source) for f in frames):
            proba = self._score_encoded(texts, encoded, batch_tokens, batch_size)
            out = self._with_predictions(frame, proba, probs, source)
            out.attrs = {**frame.attrs, "empty_text": sum(t is None for t in texts), "truncated": encoded.truncated}
            yield out

    def predict_file(
        self,
        input_path: str | Path,
        output_path: str | Path,
        text_cols: list[str] | None = None,
        probs: bool = False,
        batch_tokens: int | None = None,
        batch_size: int | None = None,
        window: int = DEFAULT_WINDOW,
        progress: bool = False,
        read: ReadOptions | None = None,
    ) -> dict[str, Any]:
        """Label every row of a file or folder of shards, resumably; see `predict_file` for the details."""
        if window < 1:
            raise ConfigError(f"window must be at least 1 row (got {window}); try {DEFAULT_WINDOW}")
        batch_tokens, batch_size = self.check_batching(batch_tokens, batch_size)
        input_path, output_path = Path(input_path), Path(output_path)
        check_not_input(output_path, [input_path, *model_files(self.model_dir)])
        check_output(output_path)
        with OutputLock(output_path):
            return self._predict_file(input_path, output_path, text_cols, probs, batch_tokens, batch_size, window,
                                      progress, read)  # fmt: skip

    # -- internals -----------------------------------------------------------------------------------------------

    def _predict_file(
        self, input_path: Path, output_path: Path, text_cols: list[str] | None, probs: bool, batch_tokens: int,
        batch_size: int | None, window: int, progress: bool, read: ReadOptions | None,
    ) -> dict[str, Any]:  # fmt: skip
        """predict_file with `OutputLock(output_path)` held."""
        check_output(output_path)  # under the lock: a run that held it before may have filled an output folder
        files = data_files(input_path)
        settings = {"model": self._identity(), "dtype": self.dtype, "max_length": self.max_length,
                    "text_cols": text_cols or self.text_cols, "probs": probs, "window": window,
                    "batch_tokens": batch_tokens, "batch_size": batch_size,
                    "read": [read.columns, read.quoting, read.encoding] if read else None}  # fmt: skip
        writer = PartWriter(output_path, {"input": input_fingerprint(files), "settings": settings})
        started, resumed = time.perf_counter(), writer.rows_done
        with _progress_bar(estimate_rows(files) if progress else None, progress, initial=resumed) as bar:
            try:
                frames = _remaining_frames(files, window, writer.parts, self.columns_read(text_cols), read or PLAIN)
                for frame in self.predict_stream(frames, text_cols, probs, batch_tokens, batch_size, str(input_path)):
                    writer.commit(frame, frame.attrs["source"], frame.attrs["empty_text"], frame.attrs["truncated"])
                    bar.update(len(frame))
            except BertfitError:
                writer.discard()  # bad input: the parts could never be resumed from once the input is fixed
                raise
        totals = writer.totals()
        writer.finish()
        seconds = time.perf_counter() - started
        log_counts(input_path, totals)
        return {**totals, "resumed_rows": resumed, "output": str(output_path), "labels": self.labels,
                "seconds": round(seconds, 2), "rows_per_s": round((totals["rows"] - resumed) / max(seconds, 1e-9), 1),
                "dtype": self.dtype}  # fmt: skip

    def columns_read(self, text_cols: list[str] | None = None) -> list[str]:
        """The input columns the model reads (read as text from CSV): the text columns, then the pair column."""
        return DataConfig(text_cols=text_cols or self.text_cols, pair_col=self.pair_col).read_as_text

    def check_batching(self, batch_tokens: int | None, batch_size: int | None) -> tuple[int, int | None]:
        if batch_tokens is not None and batch_tokens < 1:
            raise ConfigError(f"batch_tokens must be at least 1 (got {batch_tokens}); try {CPU_BATCH_TOKENS}")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1 (got {batch_size}); leave it out for no limit")
        return batch_tokens or self.default_batch_tokens(), batch_size

    def _prepare(self, frame: pd.DataFrame, cols: list[str], source: str) -> tuple[pd.DataFrame, list, Encoded]:
        texts, missing = input_texts(frame, cols, self.pair_col, source)
        texts = [None if m else t for t, m in zip(texts.tolist(), missing.tolist())]
        return frame, texts, self._encode_present(texts)

    def _encode_present(self, texts: list[str | None]) -> Encoded:
        """Token ids of the non-empty texts (empty ones get no row; `_score_encoded` leaves theirs NaN)."""
        return self.encoder([t for t in texts if t is not None])

    def _score_encoded(
        self, texts: list[str | None], encoded: Encoded, batch_tokens: int, batch_size: int | None
    ) -> np.ndarray:
        """Probabilities for every text of a window (NaN rows where the text is empty), in the window's order.

        Sliding windows of all texts are scored together in the same length-sorted batches, then each text's
        window logits are aggregated (mean or max) before the softmax (or the sigmoids, for multi-label)."""
        proba = np.full((len(texts), len(self.schema)), np.nan, dtype=np.float32)
        present = np.fromiter((t is not None for t in texts), dtype=bool, count=len(texts))
        logits = np.empty((len(encoded.lengths), len(self.schema)), dtype=np.float32)
        with torch.inference_mode():
            for idx in token_budget_batches(encoded.lengths, batch_tokens, batch_size):
                starts = None if encoded.type_starts is None else encoded.type_starts[idx]
                batch = self.encoder.pad([encoded.ids[i] for i in idx], encoded.lengths[idx], starts)
                logits[idx] = self.forward(**{k: v.to(self.device) for k, v in batch.items()}).logits.float().cpu()
        if encoded.docs is not None:
            logits = aggregate_windows(logits, encoded.docs, int(present.sum()), self.aggregate)
        if self.schema.multi_label:
            from bertfit.evaluation.multilabel import sigmoid

            proba[present] = sigmoid(logits)
        else:
            proba[present] = torch.softmax(torch.from_numpy(np.asarray(logits, np.float32)) / self.temperature, -1)
        return proba

    def _with_predictions(self, frame: pd.DataFrame, proba: np.ndarray, probs: bool, source: str) -> pd.DataFrame:
        multi = self.schema.multi_label
        prob_cols = [f"prob_{name}" for name in self.labels] if probs or multi else []
        clash = [c for c in (*(MULTI_COLUMNS if multi else OUTPUT_COLUMNS), *prob_cols) if c in frame.columns]
        if clash:
            raise DataError(f"{source}: already has a column '{clash[0]}'; rename or drop it before predicting")
        scored = ~np.isnan(proba[:, 0])
        names = np.asarray(self.labels, dtype=object)
        out = frame.copy()
        if multi:
            from bertfit.evaluation.multilabel import label_lists

            sep = self.schema.label_sep
            joined = [
                None if labels is None else sep.join(labels)
                for labels in label_lists(proba, self.thresholds, self.labels)
            ]
            out["pred_labels"] = pd.Series(joined, dtype=object, index=out.index)
        else:
            out["pred_label"] = pd.Series(np.where(scored, names[np.nan_to_num(proba).argmax(-1)], None), dtype=object)
            out["pred_score"] = np.where(scored, np.nan_to_num(proba).max(axis=1), np.nan).astype(float)
        for col, values in zip(prob_cols, proba.T):
            out[col] = values.astype(float)
        return out

    def _identity(self) -> dict[str, Any]:
        """What identifies the weights for resuming: the model folder's files with their sizes and times."""
        folder = str(self.model_dir) if self.model_dir else None
        return {"labels": self.labels, "folder": folder, "weights": _weights_stamp(self.model_dir),
                "temperature": self.temperature, "long": [self.long, self.stride, self.aggregate],
                "thresholds": self.thresholds.tolist()}  # fmt: skip


def window_settings(
    data: dict[str, Any], max_length: int, long: str | None, stride: int | None, aggregate: str | None
) -> tuple[str, int, str]:
    """long, stride and aggregate for prediction: the ones given, else those the model was trained with (`data`,
    from bertfit.json); a stride given with no `long` override keeps training's, and `long` alone takes a quarter
    of max_length. Checked, so a bad override is one line."""
    long_mode = long or data.get("long", "truncate")
    aggregate = aggregate or data.get("aggregate", "mean")
    if stride is None:
        stride = max_length // 4 if long or data.get("stride") is None else int(data["stride"])
    check_windows(long_mode, stride if long_mode == "sliding" else 0, aggregate, max_length)
    return long_mode, stride, aggregate


def check_threshold(threshold: float | None) -> float | None:
    """A multi-label threshold override: None (the tuned ones), or a number strictly between 0 and 1."""
    if threshold is not None and not 0 < threshold < 1:
        raise ConfigError(f"threshold must be between 0 and 1 (got {threshold}); try 0.5")
    return threshold


def stored_thresholds(meta: dict[str, Any], schema: LabelSchema) -> np.ndarray:
    """A multi-label model's per-label thresholds from bertfit.json (0.5 for any it does not name)."""
    values = (meta.get("thresholds") or {}).get("values", {})
    return np.array([float(values.get(name, 0.5)) for name in schema.names])


def clean_input(value: Any) -> str | tuple[str, str] | None:
    """A text, or a (text, second text) pair, stripped; None when it (or either side of the pair) is empty."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        first, second = clean_text(value[0]), clean_text(value[1])
        return None if first is None or second is None else (first, second)
    return clean_text(value)


def calibration_temperature(meta: dict[str, Any]) -> float:
    """The temperature a trained model's bertfit.json holds (1.0 when it has none, e.g. a plain HF folder)."""
    return float((meta.get("calibration") or {}).get("temperature", 1.0))  # 1.0 also when it was not applied


def predict_file(
    model_dir: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    text_cols: list[str] | None = None,
    probs: bool = False,
    dtype: str = "auto",
    batch_tokens: int | None = None,
    batch_size: int | None = None,
    max_length: int | None = None,
    window: int = DEFAULT_WINDOW,
    compile: bool = False,
    progress: bool = False,
    calibration: bool = True,
    allow_pickle: bool = False,
    long: str | None = None,
    stride: int | None = None,
    aggregate: str | None = None,
    threshold: float | None = None,
    read: ReadOptions | None = None,
) -> dict[str, Any]:
    """Label every row of a table, or of a folder of shards, without holding it in memory.

    The output keeps all input columns and rows, in order, plus pred_label, pred_score and (with `probs`) a
    prob_<label> column per label. It is written in committed parts beside the output; if the run is killed,
    running the same call again continues from the last part, and the result is the same as an uninterrupted
    run. The output appears under its name only when complete. An output path with no extension is a folder
    that receives Parquet shards. `allow_pickle` loads a model folder that has only a pickle checkpoint
    (pytorch_model.bin): loading one can run code hidden in it, so only for files from a source you trust.

    Multi-label models write `pred_labels` (the labels at or above their thresholds, joined by the training
    separator) and a prob_<label> column per label. `long`, `stride`, `aggregate` and `threshold` override what
    the model was trained with (see `Classifier.from_pretrained`); every input row gets exactly one output row.

    Every input column comes back as it was read: CSV/TSV/JSON Lines values as their text in the file (JSON Lines
    to JSON Lines as the same JSON), Parquet/HDF5/Excel values with their stored types. `read` says how to read
    the input (a headerless CSV/TSV's column names, quoting, text encoding, pickled HDF5); see `io.ReadOptions`.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    check_not_input(output_path, [input_path, *model_files(model_dir)])
    check_output(output_path)
    data_files(input_path)  # a missing input fails before the model is loaded
    with OutputLock(output_path):  # a second run into this output refuses now, not after loading the model
        clf = Classifier.from_pretrained(
            model_dir, dtype=dtype, max_length=max_length, compile=compile, calibration=calibration,
            allow_pickle=allow_pickle, long=long, stride=stride, aggregate=aggregate, threshold=threshold,
        )  # fmt: skip
        return clf.predict_file(input_path, output_path, text_cols, probs, batch_tokens, batch_size, window,
                                progress, read)  # fmt: skip


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


def _progress_bar(total: int | None, enabled: bool, initial: int = 0) -> tqdm:
    return tqdm(total=total, initial=initial, desc="predict", unit=" rows", unit_scale=True, disable=not enabled,
                file=sys.stderr, smoothing=0.1)  # fmt: skip


def log_counts(source: str | Path, totals: dict[str, int]) -> None:
    """The summary lines for rows left unscored (empty text) and texts cut at max_length."""
    if totals["empty_text"]:
        logger.warning("%s: %d of %d rows have empty text; their prediction is left empty", source,
                       totals["empty_text"], totals["rows"])  # fmt: skip
    if totals["truncated"]:
        logger.warning("%s: %d of %d texts were longer than max_length and were truncated", source,
                       totals["truncated"], totals["rows"])  # fmt: skip


def _weights_stamp(folder: Path | None) -> list[list[Any]]:
    if folder is None or not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".json"))
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def _as_list(texts: Sequence[str] | pd.Series | str) -> list[Any]:
    if isinstance(texts, str):
        raise DataError("predict() takes a list of texts; wrap a single text in a list: predict([text])")
    if isinstance(texts, pd.Series):
        return texts.tolist()
    return list(texts)
