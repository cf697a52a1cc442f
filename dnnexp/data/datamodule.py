"""The LightningDataModule: load -> split (stratified for classes) -> subsample -> standardize
-> loaders."""

from __future__ import annotations

import hashlib
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from dnnexp.data import DATASETS
from dnnexp.data.loader import InMemoryLoader, plan_items
from dnnexp.data.local_files import DataError, check_stratifiable, class_indices
from dnnexp.data.splits import (
    channel_statistics,
    random_split,
    random_subsample,
    standardize,
    statistics,
    stratified_split,
    stratified_subsample,
)


class ArrayDataModule(L.LightningDataModule):
    """Any dataset of `DATASETS`, held in memory. `input_shape`, `num_outputs` (classes, or
    regression targets) and `target_stats` are known after `setup()` and flow into the model
    and the task, so nothing downstream hard-codes 8x8 inputs or 10 classes."""

    def __init__(
        self,
        cfg: DictConfig,
        seed: int,
        steps_per_call: int = 1,
        limit_train_batches: float = 1.0,
        accumulate: int = 1,
        val_check_interval: float = 1.0,
        task: str = "classification",
    ) -> None:
        """`steps_per_call` optimizer steps of `accumulate` training batches are served as one
        item (see `InMemoryLoader` and `plan_items`); `limit_train_batches` is a share (<= 1.0)
        or a count (> 1) of the training batches; `val_check_interval` as in Lightning, in
        training batches. `task`: regression targets are standardized with the training
        split's mean and std (`target_stats`), class labels stay as they are."""
        super().__init__()
        self.cfg, self.seed, self.task = cfg, seed, task
        self.steps_per_call, self.limit_train_batches = steps_per_call, limit_train_batches
        self.accumulate, self.val_check_interval = accumulate, val_check_interval
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.classes: list[str] | None = None
        self.target_stats: dict[str, list[float]] | None = None
        # uint8 images: the training split's per-channel mean and std, applied per batch
        self.input_stats: dict[str, list[float]] | None = None
        self._num_classes = 0

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        cfg = self.cfg
        arrays = DATASETS[cfg.name](cfg)
        x, y, self.classes = arrays.x, arrays.y, arrays.classes
        regression = self.task == "regression"
        stratify = cfg.get("stratify")
        stratified = (not regression) if stratify is None else stratify
        seed = cfg.split_seed
        n = len(y)
        if arrays.x_test is not None:  # the format's own test split
            x, y = torch.cat([x, arrays.x_test]), torch.cat([y, arrays.y_test])
        if regression and self.classes is not None:
            raise DataError(
                f"data={cfg.name}: the targets are text labels; task=regression needs numbers"
            )
        if not regression:
            y, self.classes = class_indices(y, self.classes, cfg.name)
        if stratified:
            check_stratifiable(y[:n], self.classes, cfg.name)
        # with the format's own test split, validation is carved from the rest
        test_fraction = 0.0 if arrays.x_test is not None else cfg.test_fraction
        if stratified:
            train, val, test = stratified_split(y[:n], cfg.val_fraction, test_fraction, seed)
        else:
            train, val, test = random_split(n, cfg.val_fraction, test_fraction, seed)
        if arrays.x_test is not None:
            test = torch.arange(n, len(y))
        if stratified:
            train = train[stratified_subsample(y[train], cfg.train_fraction, seed)]
        else:
            train = train[random_subsample(len(train), cfg.train_fraction, seed)]
        if x.dtype == torch.uint8:  # images as the files hold them: normalized per batch
            xs = [x[train], x[val], x[test]]
            mean, std = channel_statistics(xs[0])
            self.input_stats = {"mean": mean, "std": std}
        else:  # images: one mean and std; tabular features and sequences: one per feature
            xs = standardize(x[train], x[val], x[test], per_column=x.ndim == 2)
        if regression:
            y = y.reshape(len(y), -1).float()
            mean, std = statistics(y[train], per_column=True)
            self.target_stats = {"mean": mean.tolist(), "std": std.tolist()}
            y = (y - mean) / std
        else:
            self._num_classes = len(self.classes) if self.classes else int(y.max()) + 1
        self.splits = {
            name: (xi.contiguous(), y[idx])
            for name, xi, idx in zip(("train", "val", "test"), xs, (train, val, test), strict=True)
        }

    @property
    def fingerprint(self) -> str:
        """A hash of the split indices and labels: `dnnexp eval` refuses to score a checkpoint on
        a different test split than its run used (e.g. after a change of split code)."""
        digest = hashlib.sha256()
        for name in ("train", "val", "test"):
            x, y = self.splits[name]
            digest.update(name.encode() + y.numpy().tobytes() + str(tuple(x.shape)).encode())
            digest.update(x.numpy().tobytes())
        return digest.hexdigest()[:16]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.splits["train"][0].shape[1:])

    @property
    def num_classes(self) -> int:
        """Classes of a classification dataset (0 under regression)."""
        return self._num_classes

    @property
    def num_outputs(self) -> int:
        """The model's output width: one logit per class, or one value per target."""
        if self.task == "regression":
            return int(self.splits["train"][1].shape[1])
        return self._num_classes

    def _loader(self, split: str, batch_size: int, shuffle: bool, **kwargs: Any) -> InMemoryLoader:
        rank, world = 0, 1
        if self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
        x, y = self.splits[split]
        return InMemoryLoader(x, y, batch_size, shuffle, self.seed, rank, world, **kwargs)

    @classmethod
    def for_run(cls, cfg: DictConfig) -> ArrayDataModule:
        """The data module of a training run, from its whole config. `trainer.fast_dev_run=N`
        trains N batches (Lightning would count N items of `steps_per_call` batches)."""
        t = cfg.trainer
        fast = int(t.fast_dev_run)
        limit = fast if fast else t.limit_train_batches
        every = 1.0 if fast else t.val_check_interval
        return cls(
            cfg.data,
            cfg.seed,
            t.steps_per_call,
            limit,
            t.accumulate_grad_batches,
            every,
            task=cfg.task.name,
        )

    def train_dataloader(self) -> InMemoryLoader:
        trainer = self.trainer

        def items_done() -> int:  # this epoch's items trained, as Lightning restores them
            return trainer.fit_loop.epoch_loop.batch_progress.current.processed

        loader = self._loader(
            "train",
            self.cfg.batch_size,
            shuffle=True,
            limit_batches=self.limit_train_batches,
            items_done=None if trainer is None else items_done,
        )
        loader.batches_per_item, every = plan_items(
            loader.num_batches, self.steps_per_call, self.accumulate, self.val_check_interval
        )
        if trainer is not None and every is not None:
            # Lightning counts validations in items; it reads this right after this call
            trainer.val_check_interval = every
        return loader

    def val_dataloader(self) -> InMemoryLoader:
        return self._loader("val", self.cfg.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> InMemoryLoader:
        return self._loader("test", self.cfg.eval_batch_size, shuffle=False)
