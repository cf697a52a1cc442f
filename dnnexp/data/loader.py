"""Batches sliced from in-memory tensors: no per-sample __getitem__, no collate, no workers.

Each epoch's order is a function of (seed, epoch) only, so a resumed run sees the same batches.
Under DDP every rank takes a strided shard of the same permutation: training shards are padded
to equal length (gradient sync needs as many steps on every rank), evaluation shards are not
(so no sample is counted twice in the metrics).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


class EpochShuffle:
    """Lightning calls `loader.sampler.set_epoch(epoch)` before each training epoch."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class InMemoryLoader:
    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.sampler = EpochShuffle()
        self.batch_sampler = None  # Lightning inspects these two like a DataLoader's
        n = len(y)
        self.samples_per_rank = (
            math.ceil(n / world_size) if shuffle else len(range(rank, n, world_size))
        )

    def __len__(self) -> int:
        if self.shuffle:  # training drops the last partial batch (a batch of 1 breaks batch norm)
            return max(1, self.samples_per_rank // self.batch_size)
        return math.ceil(self.samples_per_rank / self.batch_size)

    def _indices(self) -> torch.Tensor | None:
        n = len(self.y)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.sampler.epoch)
            order = torch.randperm(n, generator=g)
        elif self.world_size == 1:
            return None
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            if self.shuffle:  # pad by wrapping around so every rank gets as many samples
                order = torch.cat([order, order[: self.samples_per_rank * self.world_size - n]])
            order = order[self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._indices()
        x, y = (self.x, self.y) if order is None else (self.x[order], self.y[order])
        for i in range(len(self)):
            start = i * self.batch_size
            yield x[start : start + self.batch_size], y[start : start + self.batch_size]
