"""Training dynamics: every training row scored by the model being trained at the end of each epoch (`bertfit train
--record-dynamics`; `bertfit review --method dynamics` is one such run).

Per row: confidence (the mean probability of its given label over the epochs), variability (their standard deviation;
dataset cartography, Swayamdipta et al. 2020), correctness (the share of epochs whose likeliest label was the given
one) and the area under the margin (the mean of the given label's logit less the largest other logit; AUM, Pleiss et
al. 2020). Rows the model never learns to give their label (low confidence, low variability, negative AUM) are the
likely label errors; high variability marks the ambiguous ones.

The rows are the usable rows of the training data, scored from the token cache (the ids training reads, windows
aggregated per document as in prediction), those split off for validation included: `split` says which rows trained.
MODEL_DIR/dynamics.parquet holds one row each: `row`, its 0-based position in the training data as given (shards
counted in order), its text and label columns as given, `split`, the four figures and the given label's probability
after each epoch (`p_epoch_1`...). Rows that training dropped (no text, no label) are not in it; a log line counts
them. It is written into the staged model folder, so it is published with the model, whole, or not at all.

Resuming: each checkpoint holds the logits of the epochs scored so far (dynamics.npz, written before the checkpoint
is marked complete) and a continued run starts from them, so its figures are the uninterrupted run's. The setting is
part of the run identity: a run with --record-dynamics does not continue a checkpoint written without it (and the
reverse); that is refused in one line, as for any changed setting (same settings, or --restart).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm
from transformers import TrainerCallback

from bertfit.config import DataConfig, RunConfig
from bertfit.data.cache import TokenizedRows
from bertfit.data.io import WINDOW_ROWS, data_files, windows
from bertfit.data.rows import DataSource, row_parts
from bertfit.errors import ConfigError, DataError
from bertfit.labels import LabelSchema
from bertfit.prediction.parts import OutputLock, PartWriter
from bertfit.tokenization import aggregate_windows

logger = logging.getLogger(__name__)

DYNAMICS_FILE = "dynamics.parquet"
CHECKPOINT_FILE = "dynamics.npz"
WRITTEN = ("row", "split", "confidence", "variability", "correctness", "aum")  # and p_epoch_1, p_epoch_2, ...


@dataclass
class Dynamics:
    """Each row's figures over the epochs (rows in the training data's order)."""

    confidence: np.ndarray
    variability: np.ndarray
    correctness: np.ndarray
    aum: np.ndarray
    mean_probs: np.ndarray  # (rows, labels): the softmax averaged over epochs
    given_probs: np.ndarray  # (epochs, rows): the given label's probability after each epoch


def figures(epochs: list[np.ndarray], labels: np.ndarray) -> Dynamics:
    """Each row's dynamics figures from its per-epoch logits and its given label ids."""
    logits = np.stack(epochs).astype(np.float64)  # (epochs, rows, labels)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    rows = np.arange(len(labels))
    given = probs[:, rows, labels]  # (epochs, rows)
    other = logits.copy()
    other[:, rows, labels] = -np.inf
    margin = logits[:, rows, labels] - other.max(-1)
    correct = (probs.argmax(-1) == labels).mean(0)
    return Dynamics(given.mean(0), given.std(0), correct, margin.mean(0), probs.mean(0), given)


class DynamicsRecorder(TrainerCallback):
    """Scores `rows` with the model being trained at the end of each epoch (fp32, eval mode, then back to train) and
    keeps the logits in each checkpoint. The first process alone scores: under DDP every copy of the model is the
    same."""

    def __init__(
        self, rows: TokenizedRows, width: int, window: tuple[int, str, int], aggregate: str, progress: bool = False
    ) -> None:
        self.encoded = rows.encoded()
        self.n_docs = rows.data.n_docs
        self.width, self.window, self.aggregate, self.progress = width, window, aggregate, progress
        self.epochs: list[np.ndarray] = []  # (documents, labels) float32 logits, one array per epoch

    def on_epoch_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        from bertfit.prediction.scorer import Scorer

        if not state.is_world_process_zero:
            return
        max_length, long, stride = self.window
        device = next(model.parameters()).device.type
        scorer = Scorer(model, kwargs["processing_class"], device, "fp32", max_length, long, stride, self.width)
        logits = self._scored(scorer)
        if self.encoded.docs is not None:
            logits = aggregate_windows(logits, self.encoded.docs, self.n_docs, self.aggregate)
        self.epochs.append(np.asarray(logits, dtype=np.float32))
        model.train()
        logger.info("training dynamics: epoch %d scored on %d rows", len(self.epochs), self.n_docs)

    def _scored(self, scorer: Any) -> np.ndarray:
        """Every row's logits, WINDOW_ROWS rows at a time (each sorted by length), with a bar when progress is on."""
        rows = len(self.encoded.lengths)
        logits = np.empty((rows, self.width), dtype=np.float32)
        desc = f"training dynamics, epoch {len(self.epochs) + 1}"
        with tqdm(total=rows, desc=desc, unit=" rows", disable=not self.progress, leave=False) as bar:
            for start in range(0, rows, WINDOW_ROWS):
                part = np.arange(start, min(start + WINDOW_ROWS, rows))
                logits[part] = scorer.rows_logits(self.encoded, part, scorer.default_batch_tokens(), None)
                bar.update(len(part))
        return logits

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Into the checkpoint Trainer has just written, before CommitCheckpoints marks it complete."""
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        tmp = folder / f".{CHECKPOINT_FILE}.tmp.npz"
        np.savez(tmp, logits=self.stacked())
        os.replace(tmp, folder / CHECKPOINT_FILE)

    def stacked(self) -> np.ndarray:
        """(epochs, documents, labels) logits."""
        return np.stack(self.epochs) if self.epochs else np.empty((0, self.n_docs, self.width), np.float32)

    def restore(self, checkpoint: Path) -> None:
        """Start from the epochs scored before `checkpoint` was written."""
        path = checkpoint / CHECKPOINT_FILE
        if not path.is_file():
            raise DataError(f"{checkpoint}: holds no training dynamics ({CHECKPOINT_FILE}); pass --restart to start "
                            "over with --record-dynamics")  # fmt: skip
        with np.load(path, allow_pickle=False) as saved:
            logits = saved["logits"]
        if logits.shape[1:] != (self.n_docs, self.width):
            raise DataError(f"{path}: scores {logits.shape[1]} rows, the data has {self.n_docs}; pass --restart")
        self.epochs = list(logits)


def check_columns(cfg: DataConfig) -> None:
    """The text and label columns, which dynamics.parquet repeats, have no name of its own columns (before any
    work)."""
    clash = [c for c in [*cfg.read_as_text, cfg.label_col] if c in WRITTEN or c.startswith("p_epoch_")]
    if clash:
        raise ConfigError(f"column '{clash[0]}' has the name of a column of {DYNAMICS_FILE}; rename it to record the "
                          "training dynamics")  # fmt: skip


def recorder_for(
    cfg: RunConfig,
    train_ds: TokenizedRows,
    schema: LabelSchema,
    max_length: int,
    checkpoint: Path | None,
    progress: bool = False,
) -> DynamicsRecorder | None:
    """The run's recorder (None with record_dynamics off), started from `checkpoint` when the run continues one."""
    if not cfg.train.record_dynamics:  # one label per row (multi-label data is refused before: run.py)
        return None
    data = cfg.data
    recorder = DynamicsRecorder(TokenizedRows(train_ds.data), len(schema), (max_length, data.long,
                                data.window_stride), data.aggregate, progress)  # fmt: skip
    if checkpoint is not None:
        recorder.restore(checkpoint)
    return recorder


def write_dynamics(
    recorder: DynamicsRecorder,
    data: DataSource,
    cfg: DataConfig,
    train_ds: TokenizedRows,
    folder: Path,
    progress: bool = False,
) -> Dynamics:
    """dynamics.parquet in the staged model `folder`, from the recorder's epochs; the figures for the caller.

    The training data is read again a window at a time (with a progress bar when `progress`) and each window's
    usable rows are committed as a part with their figures (prediction's PartWriter: one schema over all parts,
    values as given), so the texts of a large training file are never all in memory at once."""
    tokens = train_ds.data
    firsts = np.unique(tokens.docs, return_index=True)[1] if tokens.docs is not None else slice(None)
    dyn = figures(recorder.epochs, tokens.labels[firsts])
    trained = np.zeros(len(dyn.aum), dtype=bool)
    trained[train_ds.rows if tokens.docs is None else tokens.docs[train_ds.rows]] = True
    ours = pd.DataFrame({"split": np.where(trained, "train", "validation"), "confidence": dyn.confidence,
                         "variability": dyn.variability, "correctness": dyn.correctness, "aum": dyn.aum,
                         **{f"p_epoch_{e + 1}": p for e, p in enumerate(dyn.given_probs)}})  # fmt: skip
    output = folder / DYNAMICS_FILE
    with OutputLock(output, "bertfit train --record-dynamics"):
        writer = PartWriter(output, {"dynamics": str(folder)})
        writer.discard()  # written whole each time: an earlier killed run's parts are not this run's
        writer.parts = []
        try:
            usable = _commit_given_rows(writer, data, cfg, tokens.source, ours, progress)
            if usable != len(ours):
                raise DataError(f"{tokens.source}: changed while training ({usable} usable rows, {len(ours)} "
                                "trained); train again")  # fmt: skip
            writer.finish()
        except BaseException:
            writer.discard()
            raise
    dropped = {why: n for why, n in tokens.dropped.items() if n}
    if dropped:
        logger.info("%s: %d rows of the data are not in it (%s): training dropped them", DYNAMICS_FILE,
                    sum(dropped.values()), ", ".join(f"{n} with {why}" for why, n in dropped.items()))  # fmt: skip
    logger.info("training dynamics of %d rows over %d epochs: %s", len(ours), len(recorder.epochs), DYNAMICS_FILE)
    return dyn


def _commit_given_rows(
    writer: PartWriter, data: DataSource, cfg: DataConfig, name: str, ours: pd.DataFrame, progress: bool
) -> int:
    """Each window of the training data as read for the token cache, as one part: its usable rows' 0-based
    positions, their text and label columns as given, and their figures (`ours`: one row per usable row, in order).
    Returns the number of usable rows read; stops as soon as that is more than `ours` holds."""
    source = data if isinstance(data, pd.DataFrame) else data_files(data)
    columns = list(dict.fromkeys([*cfg.read_as_text, cfg.label_col]))
    done = start = 0
    read = windows(source, cfg.read_as_text, cfg.read_options, name, f"dynamics: reading {name} again", progress)
    for frame, path in read:
        _, _, no_text, no_label = row_parts(frame, cfg, path)
        keep = ~(no_text | no_label).to_numpy()
        kept = int(keep.sum())
        if done + kept > len(ours):
            return done + kept
        given = frame.loc[keep, columns].reset_index(drop=True)
        part = pd.concat([pd.DataFrame({"row": start + np.flatnonzero(keep).astype(np.int64)}), given,
                          ours.iloc[done : done + kept].reset_index(drop=True)], axis=1)  # fmt: skip
        part.attrs = dict(frame.attrs)  # JSON Lines: which columns hold raw JSON values
        writer.commit(part, source=0, empty_text=0, truncated=0)
        done, start = done + kept, start + len(frame)
    return done
