"""Batches sliced from in-memory tensors: no per-sample __getitem__, no collate, no workers.

Each epoch's order is a function of (seed, epoch) only, so a resumed run sees the same batches.
A training loader can serve `batches_per_item` consecutive batches as one item (one tensor
slice): the task then takes that many optimizer steps in one Lightning `training_step`, so the
Lightning loop's fixed cost per item (a large share of a small model's step) is
paid once per item instead of once per batch.
Under DDP every rank takes a strided shard of the same permutation: training shards are padded
to equal length (gradient sync needs as many steps on every rank), evaluation shards are not
(so no sample is counted twice in the metrics).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch

from dnnexp.config.errors import RunError

BUCKET_POOL = 50  # batches sorted together by length (data.bucket): similar, yet shuffled


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
        batches_per_item: int = 1,
        limit_batches: float | int = 1.0,
        items_done: Callable[[], int] | None = None,
        extra: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        poisson: bool = False,
    ) -> None:
        """`items_done`: the items of the current epoch already trained, as the trainer counts
        them; it makes the loader resumable in the middle of an epoch (`state_dict`). `extra`:
        one more tensor row-aligned with y (a teacher's outputs), batched with it: items are
        then (x, y, extra). `poisson` (privacy=dp, training): each batch takes every sample
        with probability batch_size / N, independently (sizes vary, a batch may be empty);
        items are (x, y, sizes); an epoch is as many batches as a shuffled epoch."""
        self.x, self.y, self.extra = x, y, extra
        self.lengths = lengths  # each text's length: batches of similar lengths (data.bucket)
        self.items_done = items_done
        self._resume_at: tuple[int, int] | None = None  # (epoch, items to skip) after a load
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.batches_per_item = batches_per_item
        self.poisson = poisson
        self.sampler = EpochShuffle()
        self.batch_sampler = None  # Lightning inspects these two like a DataLoader's
        n = len(y)
        self.samples_per_rank = (
            math.ceil(n / world_size) if shuffle else len(range(rank, n, world_size))
        )
        if shuffle:  # training drops the last partial batch (a batch of 1 breaks batch norm)
            self.num_batches = max(1, self.samples_per_rank // batch_size)
        else:
            self.num_batches = math.ceil(self.samples_per_rank / batch_size)
        # a count of batches (an int, or a float > 1 from the config), else a share of them
        if isinstance(limit_batches, int) or limit_batches > 1:
            self.num_batches = min(self.num_batches, int(limit_batches))
        else:
            self.num_batches = min(self.num_batches, max(1, int(self.num_batches * limit_batches)))

    def __len__(self) -> int:
        """Items per epoch (Lightning's batches); `num_batches` counts the batches in them."""
        return math.ceil(self.num_batches / self.batches_per_item)

    def _indices(self) -> torch.Tensor | None:
        n = len(self.y)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.sampler.epoch)
            order = torch.randperm(n, generator=g)
            if self.lengths is not None:
                order = self._bucketed(order, g)
        elif self.world_size == 1:
            return None
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            if self.shuffle:  # pad by wrapping around so every rank gets as many samples
                order = torch.cat([order, order[: self.samples_per_rank * self.world_size - n]])
            order = order[self.rank :: self.world_size]
        return order

    def _bucketed(self, order: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """The shuffled `order` regrouped so that each batch holds texts of similar lengths:
        sorted by length within pools of BUCKET_POOL batches, then the batches shuffled (the
        epoch still a function of seed and epoch only)."""
        b = self.batch_size
        pool = b * BUCKET_POOL
        parts = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            parts.append(chunk[torch.argsort(self.lengths[chunk], stable=True)])
        order = torch.cat(parts)
        whole = len(order) // b * b
        batches = order[:whole].view(-1, b)[torch.randperm(whole // b, generator=g)]
        return torch.cat([batches.reshape(-1), order[whole:]])

    def state_dict(self) -> dict[str, Any]:
        """Lightning saves this with each checkpoint (a loader with state_dict/load_state_dict
        is resumable to it): where in which epoch a checkpoint taken mid-epoch was."""
        if self.items_done is None:
            return {}
        return {"epoch": self.sampler.epoch, "items_done": int(self.items_done())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The next pass over `state`'s epoch starts after its trained items, so a run resumed
        from a mid-epoch checkpoint sees the same batches as one that was never stopped."""
        if state.get("items_done", 0) > 0:
            self._resume_at = (int(state["epoch"]), int(state["items_done"]))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        if self.poisson:
            yield from self._poisson_batches(self._skip())
            return
        order = self._indices()
        if order is not None:  # data copied to a GPU is shuffled there
            order = order.to(self.x.device)
        x, y, extra = (self.x, self.y, self.extra)
        if order is not None:
            x, y = x[order], y[order]
            extra = None if extra is None else extra[order]
        b, end = self.batch_size, self.num_batches * self.batch_size
        step = b * self.batches_per_item
        skip = self._skip()
        for start in range(skip * step, end, step):
            stop = min(start + step, end)
            if extra is None:
                yield x[start:stop], y[start:stop]
            else:
                yield x[start:stop], y[start:stop], extra[start:stop]

    def _skip(self) -> int:
        """Items of this epoch a resumed run already trained (once, after a load)."""
        skip = 0
        if self._resume_at is not None and self._resume_at[0] == self.sampler.epoch:
            skip = self._resume_at[1]
        self._resume_at = None
        return skip

    def _poisson_batches(self, skip: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """Poisson-sampled batches, a function of (seed, epoch), `batches_per_item` of them per
        item as (x, y, sizes): the batches concatenated and each one's size. A resumed run
        draws the skipped batches again, and trains on the same ones after them."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.sampler.epoch)
        n, k = len(self.y), self.batches_per_item
        rate = self.batch_size / n
        takes: list[torch.Tensor] = []
        for i in range(self.num_batches):
            take = (torch.rand(n, generator=g) < rate).nonzero().squeeze(1)
            if i < skip * k:
                continue
            takes.append(take)
            if len(takes) == k or i == self.num_batches - 1:
                sizes = torch.tensor([len(t) for t in takes])
                index = torch.cat(takes).to(self.x.device)
                yield self.x[index], self.y[index], sizes
                takes = []


def plan_items(
    num_batches: int, steps_per_call: int, accumulate: int, val_check_interval: float
) -> tuple[int, int | None]:
    """How a training epoch of `num_batches` batches is served: (batches per Lightning item,
    validate every N items, or None for once at the end of the epoch).

    An item holds up to `steps_per_call` optimizer steps of `accumulate` batches each. With
    `val_check_interval` < 1.0 (a share of the epoch) or > 1 (a number of batches), validation
    comes every that many batches, rounded down to whole optimizer steps, so item boundaries
    fall exactly on validations and on optimizer steps: the items are then as long as
    `steps_per_call` allows while dividing the validation period. Lightning validates after
    every N items, so an epoch's left-over batches (its last, shorter item or items) get a
    validation of their own when N is 1, and none in that epoch otherwise.
    """
    per_item = steps_per_call * accumulate
    if val_check_interval == 1.0:
        return per_item, None
    period = (
        int(val_check_interval)
        if val_check_interval > 1
        else max(1, int(num_batches * val_check_interval))
    )
    if period > num_batches:
        raise RunError(
            f"trainer.val_check_interval={int(val_check_interval)} batches is more than an"
            f" epoch ({num_batches} training batches): use a share <= 1.0 or fewer batches"
        )
    steps = max(1, period // accumulate)  # optimizer steps between validations
    if steps * accumulate >= num_batches:
        return per_item, None
    steps_per_item = max(d for d in range(1, min(steps_per_call, steps) + 1) if steps % d == 0)
    return steps_per_item * accumulate, steps // steps_per_item
