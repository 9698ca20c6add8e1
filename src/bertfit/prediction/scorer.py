"""Scorer: a model, its tokenizer, device and dtype -> logits, in batches cut by a token budget.

Texts are tokenized by one call to the Rust tokenizer (`tokenization.WindowEncoder`: truncation, head-tail or
sliding windows), sorted by token length, cut into batches of about `batch_tokens` padded tokens, and run forward
under torch.inference_mode() in the dtype the weights were cast to once at loading.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bertfit.config import check_windows
from bertfit.errors import ConfigError
from bertfit.tokenization import Encoded, WindowEncoder, token_budget_batches

CPU_BATCH_TOKENS = 4096  # best of 1024-16384 on 2 Xeon cores with AMX, by a few %; see docs/benchmarks.md
GPU_BATCH_TOKENS = 65536
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class Scorer:
    """Logits of texts (or (text, second text) pairs) from one model: one row per token window.

    `forward` is what runs a padded batch (the model, its torch.compile'd form, or an ONNX Runtime or OpenVINO
    model: `engine` names which, see `engines`); `encoder` cuts the texts. `model` is None for the other engines.
    """

    def __init__(
        self, model: Any, tokenizer: Any, device: str, dtype: str, max_length: int, long: str, stride: int, width: int
    ) -> None:
        self.model = model.eval() if model is not None else None
        self.engine = "torch"
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype  # "auto" on a CPU until the first rows are scored (settle_dtype)
        self.requested_dtype = dtype
        self.max_length = max_length
        self.long = long
        self.stride = stride
        self.width = width  # logits per row: the number of labels
        self.encoder = WindowEncoder(tokenizer, max_length, long, stride)
        self.forward: Callable[..., Any] = model
        self.identity: dict[str, Any] | None = None  # the model folder and its files: the key of a measured dtype
        self.multi_label = False  # how a measured dtype's agreement is counted (dtype_choice.decisions)
        self.engine_auto = False  # --engine auto on a torch folder: may OpenVINO run it instead (engine_choice)

    def default_batch_tokens(self) -> int:
        return CPU_BATCH_TOKENS if self.device == "cpu" else GPU_BATCH_TOKENS

    def check_batching(self, batch_tokens: int | None, batch_size: int | None) -> tuple[int, int | None]:
        if batch_tokens is not None and batch_tokens < 1:
            raise ConfigError(f"batch_tokens must be at least 1 (got {batch_tokens}); try {CPU_BATCH_TOKENS}")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1 (got {batch_size}); leave it out for no limit")
        return batch_tokens or self.default_batch_tokens(), batch_size

    def encode_present(self, texts: list[Any]) -> Encoded:
        """Token ids of the non-empty texts (empty ones, None, get no row)."""
        return self.encoder([t for t in texts if t is not None])

    def logits(self, encoded: Encoded, batch_tokens: int, batch_size: int | None, pad_multiple: int = 1) -> np.ndarray:
        """fp32 logits, shape (rows of `encoded`, width), in the rows' order; scored longest first in batches.

        With dtype "auto" the first call settles the dtype (`dtype_choice.decide`: measured on these rows, or as
        measured earlier for this machine and model). `pad_multiple`: each batch padded to a multiple of this many
        tokens (fewer shapes; see serving.batcher.PAD_MULTIPLE)."""
        if self.dtype == "auto" and self.engine == "torch" and len(encoded.lengths):
            self.settle(encoded, batch_tokens, batch_size)
        return self.rows_logits(encoded, np.arange(len(encoded.lengths)), batch_tokens, batch_size, pad_multiple)

    def rows_logits(
        self, encoded: Encoded, rows: np.ndarray, batch_tokens: int, batch_size: int | None, pad_multiple: int = 1
    ) -> np.ndarray:
        """fp32 logits of some rows of `encoded`, shape (len(rows), width), in the order of `rows`."""
        logits = np.empty((len(rows), self.width), dtype=np.float32)
        with torch.inference_mode():
            for idx in token_budget_batches(encoded.lengths[rows], batch_tokens, batch_size):
                picked = rows[idx]
                starts = None if encoded.type_starts is None else encoded.type_starts[picked]
                ids = [encoded.ids[i] for i in picked]
                batch = self.encoder.pad(ids, encoded.lengths[picked], starts, pad_multiple)
                logits[idx] = self.forward(**{k: v.to(self.device) for k, v in batch.items()}).logits.float().cpu()
        return logits

    def settle(self, encoded: Encoded, batch_tokens: int, batch_size: int | None) -> None:
        """Pick the engine (with --engine auto) and the dtype for "auto" on a CPU, measured on `encoded` or from the
        cache: OpenVINO when `engine_choice` finds it faster and in agreement, else torch in the measured dtype."""
        if self.engine_auto:
            from bertfit.prediction.engine_choice import settle_engine

            if settle_engine(self, encoded, batch_tokens, batch_size):
                return
        self.settle_dtype(encoded, batch_tokens, batch_size)

    def settle_dtype(self, encoded: Encoded, batch_tokens: int, batch_size: int | None) -> None:
        """Pick the dtype for "auto" on a CPU by timing the candidates on `encoded` (or from the cache)."""
        from bertfit.prediction.dtype_choice import decide

        def run(rows: np.ndarray) -> np.ndarray:
            return self.rows_logits(encoded, rows, batch_tokens, batch_size)

        self.dtype = decide(run, self.caster(), encoded.lengths, self.identity, self.multi_label)

    def caster(self) -> Callable[..., None]:
        """`cast(dtype, final=False)`: the torch model to a dtype; a trial cast keeps the fp32 weights so that
        casting back to fp32 is exact, the final one drops them."""
        weights: dict[str, torch.Tensor] = {}  # fp32 weights while a trial runs in bf16 (casting back would round)

        def cast(dtype: str, final: bool = False) -> None:
            if dtype != "fp32" and not final and not weights:
                weights.update({name: value.detach().clone() for name, value in self.model.state_dict().items()})
            self.model.to(dtype=DTYPES[dtype])
            if dtype == "fp32" and weights:
                self.model.load_state_dict(weights)
            if final:
                weights.clear()

        return cast

    def compile(self) -> None:
        """Run the model through torch.compile from now on (faster on large inputs; compiling takes ~30 s)."""
        if self.engine != "torch":
            raise ConfigError(f"--compile is for the torch engine; the {self.engine} engine compiles its model itself")
        self.forward = torch.compile(self.model, dynamic=True)
        self.engine_auto = False  # compiled on purpose: the torch engine it stays


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
