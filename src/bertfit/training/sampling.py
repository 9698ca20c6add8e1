"""Training and evaluation order over tokenized rows: a fresh global shuffle every epoch, grouped by length, and
longest-first evaluation. Both read only the row lengths the token cache keeps."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


class EpochSampler(torch.utils.data.Sampler[int]):
    """Every row once per epoch, in an order drawn from (seed, epoch) alone, so a resumed run sees the same order.

    The order is a permutation of all rows (a global shuffle, never chunk by chunk). With `group_by_length`, rows
    are then sorted by length inside pools of `pool_batches` batches, cut into batches and the batches shuffled:
    little padding, and no batch or run of batches drawn from one region of the input.
    """

    def __init__(
        self, lengths: np.ndarray, batch_size: int, seed: int, group_by_length: bool = True, pool_batches: int = 50
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.pool = batch_size * pool_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        perm = rng.permutation(len(self.lengths))
        if not self.group_by_length:
            return perm
        pool_of = np.arange(len(perm)) // self.pool
        perm = perm[np.lexsort((-self.lengths[perm], pool_of))]  # longest first inside each pool
        full = len(perm) // self.batch_size * self.batch_size
        batches = perm[:full].reshape(-1, self.batch_size)[rng.permutation(full // self.batch_size)]
        return np.concatenate([batches.ravel(), perm[full:]])

    def __iter__(self) -> Iterator[int]:
        order = self.order(self.epoch)
        for start in range(0, len(order), 65_536):  # no list of every row at once: 10M Python ints is 300 MB
            yield from order[start : start + 65_536].tolist()


class LengthOrder(torch.utils.data.Sampler[int]):
    """Evaluation order: longest rows first, so batches carry little padding. Trainer's outputs keep label_ids."""

    def __init__(self, lengths: np.ndarray) -> None:
        self.order = np.argsort(-np.asarray(lengths), kind="stable")

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order.tolist())
