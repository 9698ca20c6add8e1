"""Classifier: label texts at the speed of the hardware, from a list in memory or streamed from files of any size.

A Classifier is a facade over a `Scorer` (engine, tokenizer, device, dtype -> logits, batched by a token budget) and
a `Decoder` (temperature, thresholds, label names, window aggregation -> labels and output columns); `stream` runs
tables through both, and labels whole files resumably (`predict_file`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bertfit.config import DataConfig
from bertfit.data.io import PLAIN, ReadOptions, data_files
from bertfit.data.paths import check_not_input, model_files
from bertfit.data.rows import clean_text
from bertfit.errors import ConfigError, DataError
from bertfit.prediction.decoder import check_threshold
from bertfit.prediction.loading import Loaded, build_parts, explainer_scorer, input_columns, load_engine
from bertfit.prediction.parts import OutputLock, check_output
from bertfit.prediction.stream import (
    DEFAULT_WINDOW,
    label_frames,
    predict_file_job,
    progress_bar,
    score_window,
    weights_stamp,
)

if TYPE_CHECKING:
    from bertfit.explain import Explanation


def _part(part: str, name: str) -> property:
    """An attribute of the Classifier that is its scorer's or decoder's: read and set there."""
    return property(
        lambda self: getattr(getattr(self, part), name),
        lambda self, value: setattr(getattr(self, part), name, value),
        doc=f"`self.{part}.{name}`",
    )


class Classifier:
    """A fine-tuned text classifier.

    Example:
        >>> clf = Classifier.from_pretrained("models/emotion")
        >>> clf.predict(["i feel great"])
        [{'label': 'joy', 'score': 0.98}]
    """

    model = _part("scorer", "model")
    tokenizer = _part("scorer", "tokenizer")
    device = _part("scorer", "device")
    dtype = _part("scorer", "dtype")
    max_length = _part("scorer", "max_length")
    long = _part("scorer", "long")
    stride = _part("scorer", "stride")
    encoder = _part("scorer", "encoder")
    forward = _part("scorer", "forward")
    engine = _part("scorer", "engine")  # torch, onnx or openvino
    schema = _part("decoder", "schema")
    temperature = _part("decoder", "temperature")  # 1.0: scores are the plain softmax
    thresholds = _part("decoder", "thresholds")  # multi-label: a label is on from its threshold
    aggregate = _part("decoder", "aggregate")

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
        loaded: Loaded | None = None,
    ) -> None:
        self.meta = meta
        self.scorer, self.decoder = build_parts(model, tokenizer, meta, device, dtype, max_length, long, stride,
                                                aggregate, loaded)  # fmt: skip
        self.text_cols, self.pair_col = input_columns(meta)
        self.model_dir: Path | None = None
        self._explainer: Any = None  # an export's fp32 torch scorer for explain, loaded on the first call

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
        engine: str = "auto",
    ) -> Classifier:
        """Load a folder written by `bertfit train` or `bertfit export` (or any Hugging Face sequence-classification
        folder).

        Args:
            dtype: "auto": on a CPU, the first rows scored time fp32 against bf16 and the fastest that agrees with
                fp32 on >= 99.5% of the top labels is kept (and remembered for this machine and model); on a GPU,
                bf16 where supported, else fp16. Or force "fp32", "bf16", "fp16". Weights are cast once. The openvino
                engine: "auto" lets OpenVINO pick (bf16 where the CPU has it), "fp32"/"bf16" set its inference
                precision; the onnx engine runs fp32 (int8 exports: int8).
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
            engine: "auto" (the folder's own: onnx or openvino for a folder written by `bertfit export`; for a
                torch folder with dtype "auto" and OpenVINO installed, torch or the model converted to OpenVINO,
                whichever is faster here and agrees with fp32, measured when the first rows scored are 5,000 or more
                (a file's first window, a large predict() call) and remembered: see `engine_choice`), "torch",
                "onnx" or "openvino" (those two need `pip install 'bertfit[onnx]'` or `'bertfit[openvino]'` and an
                exported folder). Every engine gives the same outputs, in the same streaming pipeline; only the
                speed and the precision differ.
        """
        if max_length is not None and max_length < 2:
            raise ConfigError(f"max_length must be at least 2 (got {max_length}); try 128")
        got = load_engine(model_dir, engine, device, dtype, allow_pickle, trust_remote_code)
        clf = cls(got.model, got.tokenizer, got.meta, got.device, got.dtype, max_length, long, stride, aggregate, got)
        clf.model_dir = Path(model_dir).resolve()
        clf.scorer.identity = {"folder": str(clf.model_dir), "weights": weights_stamp(clf.model_dir)}
        if not calibration:
            clf.temperature = 1.0
        if check_threshold(threshold) is not None:
            clf.thresholds = np.full(len(clf.schema), float(threshold))
        if compile:
            clf.scorer.compile()
        return clf

    @property
    def labels(self) -> list[str]:
        return self.decoder.labels

    def default_batch_tokens(self) -> int:
        return self.scorer.default_batch_tokens()

    def check_batching(self, batch_tokens: int | None, batch_size: int | None) -> tuple[int, int | None]:
        return self.scorer.check_batching(batch_tokens, batch_size)

    def columns_read(self, text_cols: list[str] | None = None) -> list[str]:
        """The input columns the model reads (read as text from CSV): the text columns, then the pair column."""
        return DataConfig(text_cols=text_cols or self.text_cols, pair_col=self.pair_col).read_as_text

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
        return self.decoder.records(proba)

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
        with progress_bar(len(texts), progress) as bar:
            for start in range(0, len(texts), DEFAULT_WINDOW):
                window = [clean_input(t) for t in texts[start : start + DEFAULT_WINDOW]]
                encoded = self.scorer.encode_present(window)
                proba[start : start + len(window)] = score_window(self.scorer, self.decoder, window, encoded,
                                                                  batch_tokens, batch_size)  # fmt: skip
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
        Gradients in fp32; needs `pip install 'bertfit[explain]'`. See `bertfit.explain` for the method. An ONNX
        or OpenVINO export explains on the fp32 torch weights kept beside it (loaded on the first call)."""
        from bertfit.explain import explain_parts

        scorer = self.scorer
        if scorer.model is None:  # an exported folder; a torch one that auto moved to OpenVINO keeps its model
            if self._explainer is None:
                self._explainer = explainer_scorer(scorer, self.model_dir, self.engine)
            scorer = self._explainer
        return explain_parts(scorer, self.decoder, self.pair_col, texts, label, n_steps, internal_batch_size,
                             progress)  # fmt: skip

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
        yield from label_frames(self.scorer, self.decoder, frames, cols, self.pair_col, probs, batch_tokens,
                                batch_size, source)  # fmt: skip

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
        engine = "auto" if self.scorer.engine_auto else self.engine  # as asked: auto may settle on openvino
        settings = {"model": self._identity(), "engine": engine, "dtype": self.scorer.requested_dtype,
                    "max_length": self.max_length, "text_cols": text_cols or self.text_cols, "probs": probs,
                    "window": window,
                    "batch_tokens": batch_tokens, "batch_size": batch_size,
                    "read": [read.columns, read.quoting, read.encoding] if read else None}  # fmt: skip

        def label(frames: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            return self.predict_stream(frames, text_cols, probs, batch_tokens, batch_size, str(input_path))

        with OutputLock(output_path):
            done = predict_file_job(label, input_path, output_path, settings, self.columns_read(text_cols),
                                    read or PLAIN, progress, self.labels)  # fmt: skip
        return {**done, "engine": self.engine, "dtype": self.dtype}

    def _identity(self) -> dict[str, Any]:
        """What identifies the weights for resuming: the model folder's files with their sizes and times."""
        folder = str(self.model_dir) if self.model_dir else None
        return {"labels": self.labels, "folder": folder, "weights": weights_stamp(self.model_dir),
                "temperature": self.temperature, "long": [self.long, self.stride, self.aggregate],
                "thresholds": self.thresholds.tolist()}  # fmt: skip


def clean_input(value: Any) -> str | tuple[str, str] | None:
    """A text, or a (text, second text) pair, stripped; None when it (or either side of the pair) is empty."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        first, second = clean_text(value[0]), clean_text(value[1])
        return None if first is None or second is None else (first, second)
    return clean_text(value)


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
    engine: str = "auto",
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
    `engine` runs the model: the folder's own (auto), torch, onnx or openvino (see `Classifier.from_pretrained`).
    """
    input_path, output_path = Path(input_path), Path(output_path)
    check_not_input(output_path, [input_path, *model_files(model_dir)])
    check_output(output_path)
    data_files(input_path)  # a missing input fails before the model is loaded
    with OutputLock(output_path):  # a second run into this output refuses now, not after loading the model
        clf = Classifier.from_pretrained(
            model_dir, dtype=dtype, max_length=max_length, compile=compile, calibration=calibration,
            allow_pickle=allow_pickle, long=long, stride=stride, aggregate=aggregate, threshold=threshold,
            engine=engine,
        )  # fmt: skip
        return clf.predict_file(input_path, output_path, text_cols, probs, batch_tokens, batch_size, window,
                                progress, read)  # fmt: skip


def _as_list(texts: Sequence[str] | pd.Series | str) -> list[Any]:
    if isinstance(texts, str):
        raise DataError("predict() takes a list of texts; wrap a single text in a list: predict([text])")
    if isinstance(texts, pd.Series):
        return texts.tolist()
    return list(texts)
