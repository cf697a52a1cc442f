"""The LightningDataModule: load -> split (stratified for classes) -> subsample -> standardize
-> loaders."""

from __future__ import annotations

import hashlib
from functools import partial
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from dnnexp import compat
from dnnexp.config.heads import heads_of
from dnnexp.config.validate import private
from dnnexp.data import DATASETS, MULTITASK
from dnnexp.data.columns import ColumnEncoder, encoded_names, fit_columns, recode
from dnnexp.data.loader import InMemoryLoader, plan_items
from dnnexp.data.local_files import (
    DataError,
    check_stratifiable,
    class_indices,
    keep_classes,
    say,
)
from dnnexp.data.spec import DataSpec
from dnnexp.data.splits import (
    channel_statistics,
    fold_split,
    random_split,
    random_subsample,
    standardize,
    statistics,
    stratified_split,
    stratified_subsample,
)
from dnnexp.data.text import (
    PAD,
    encode,
    encode_targets,
    fit_vocab,
    group_references,
    load_pairs,
    text_stats,
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
        data_on_device: str = "auto",
        overfit_batches: float = 0.0,
        limit_eval_batches: tuple[float, float] = (1.0, 1.0),
        poisson: bool = False,
        heads: list[dict[str, Any]] | None = None,
    ) -> None:
        """`steps_per_call` optimizer steps of `accumulate` training batches are served as one
        item (see `InMemoryLoader` and `plan_items`); `limit_train_batches` is a share (<= 1.0)
        or a count (> 1) of the training batches; `val_check_interval` as in Lightning, in
        training batches. `task`: regression targets are standardized with the training
        split's mean and std (`target_stats`), class labels stay as they are.
        `data_on_device`: "auto" copies the dataset to the accelerator once, when it fits
        (`place_on_device`); "never" leaves it in host memory, batch by batch.
        `overfit_batches`: train and validate on the first N batches (or share), `_overfit`.
        `limit_eval_batches`: Lightning's limit_val_batches and limit_test_batches, applied by
        the loaders, so a share keeps at least one batch. `poisson` (privacy=dp): each training
        batch a Poisson sample of the training split, one batch per item. `heads`:
        task=multitask's (`config/heads.py`), whose columns are the targets."""
        super().__init__()
        self.poisson = poisson
        self.overfit_batches = float(overfit_batches)
        self.limit_val_batches, self.limit_test_batches = limit_eval_batches
        self.cfg, self.seed, self.task = cfg, seed, task
        self.steps_per_call, self.limit_train_batches = steps_per_call, limit_train_batches
        self.accumulate, self.val_check_interval = accumulate, val_check_interval
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.classes: list[str] | None = None
        self.target_stats: dict[str, list[float]] | None = None
        # uint8 images: the training split's per-channel mean and std, applied per batch
        self.input_stats: dict[str, list[float]] | None = None
        # the valid range of the standardized inputs (low, high) and one raw unit in them (unit),
        # per channel or feature: what adversarial examples are clipped to and measured in
        self.input_range: dict[str, list[float]] | None = None
        # what a raw input needs before the model (`dnnexp predict`, `dnnexp export`): its dtype,
        # the training split's mean and std (one, per channel or per feature), feature names
        self.preprocess: dict[str, Any] | None = None
        # a distillation teacher's outputs for the training split, when they are fixed (no
        # batch transforms): computed once, served with each batch (`InMemoryLoader.extra`)
        self.teacher_outputs: torch.Tensor | None = None
        self._num_classes = 0
        self.data_on_device = data_on_device
        self._placed_for: torch.device | None = None
        self._fingerprint = ""
        self.test_fingerprint = ""  # the raw test split's alone (set up by setup())
        self.raw_test: torch.Tensor | None = None  # a table's test rows, raw columns
        self.vocab_size: int | None = None  # text: the vocabulary's size (token ids)
        self.heads = heads
        # task=multitask: each head with its classes and its width in the model's outputs
        self.head_info: list[dict[str, Any]] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self._load_splits()
        if self.overfit_batches:
            self._overfit(self.overfit_batches)

    def _overfit(self, amount: float) -> None:
        """`trainer.overfit_batches`: the first N batches (or share) of the training split are
        the training split (unshuffled) and the validation split: a model that cannot drive
        their loss towards zero has a bug, not a generalization problem."""
        x, y = self.splits["train"]
        n = round(amount * len(y)) if amount < 1 else int(amount) * self.cfg.batch_size
        n = max(1, min(n, len(y)))
        self.splits["train"] = self.splits["val"] = (x[:n], y[:n])

    def _load_splits(self) -> None:
        cfg = self.cfg
        regression, labelled = self.task == "regression", self.task == "classification"
        multitask = self.task == "multitask"
        if self.task == "seq2seq":
            arrays = load_pairs(cfg)
        elif multitask:
            if cfg.name not in MULTITASK:
                raise DataError(f"task=multitask reads {'/'.join(MULTITASK)}, not data={cfg.name}")
            arrays = MULTITASK[cfg.name](cfg, list(self.heads or []))
        else:
            arrays = DATASETS[cfg.name](cfg)
        x, y, self.classes = arrays.x, arrays.y, arrays.classes
        features = arrays.features
        stratify = cfg.get("stratify")
        stratified = labelled if stratify is None else stratify
        seed = cfg.split_seed
        n = len(y)
        own_test = arrays.x_test is not None  # the format's own test split, indices n..
        if own_test:  # labels are joined (class indices span both); images are not copied
            y = torch.cat([y, arrays.y_test])
        if regression and self.classes is not None:
            raise DataError(
                f"data={cfg.name}: the targets are text labels; task=regression needs numbers"
            )
        x_test = arrays.x_test
        if labelled:
            y, self.classes = class_indices(y, self.classes, cfg.name)
        if labelled and cfg.get("classes"):  # a subset of the classes, renumbered
            keep, y, self.classes = keep_classes(y, self.classes, list(cfg.classes), cfg.name)
            x = x[keep[:n]]
            x_test = x_test[keep[n:]] if own_test else None
            y, n = y[keep], int(keep[:n].sum())
        if stratified:
            check_stratifiable(y[:n], self.classes, cfg.name)
        # with the format's own test split, validation is carved from the rest
        test_fraction = 0.0 if own_test else cfg.test_fraction
        folds = cfg.get("folds")  # k-fold: the test split as without folds, the rest in folds
        val_fraction = 0.0 if folds else cfg.val_fraction
        if stratified:
            train, val, test = stratified_split(y[:n], val_fraction, test_fraction, seed)
        else:
            train, val, test = random_split(n, val_fraction, test_fraction, seed)
        if folds:  # fold `data.fold` of the rest validates, the other folds train
            train, val = fold_split(train, y[train] if stratified else None, folds, cfg.fold, seed)
        if own_test:
            test = torch.arange(n, len(y))
        if stratified:
            train = train[stratified_subsample(y[train], cfg.train_fraction, seed)]
        else:
            train = train[random_subsample(len(train), cfg.train_fraction, seed)]
        xs = [x[train], x[val], x_test if own_test else x[test]]
        self.test_fingerprint = _digest(xs[2], y[test])  # raw: before any fold's standardization
        if multitask:  # regression heads standardized by the training split's labelled rows
            y = self._head_targets(arrays.heads, y, train)
        columns, text = arrays.columns, arrays.text
        del x, x_test, arrays  # only the splits stay in memory
        if text is not None:  # row indices: encoded by the training split's vocabulary
            self.test_fingerprint = _digest(torch.zeros(0), y[test]) + text.digest(xs[2])
            if text.references is not None:
                self._setup_pairs(text, xs)
            else:
                self._setup_text(text, xs, y, (train, val, test))
            if multitask:
                self.preprocess["heads"] = self.head_info
            return
        spec = None
        if columns is not None:  # a table's raw columns, encoded by the training split's stats
            spec = fit_columns(columns, xs[0], cfg.missing)
            encoder = ColumnEncoder(spec)
            xs = [recode(xi, columns, spec) for xi in xs]
            self.raw_test = xs[2]  # what `dnnexp export` checks the exported model on
            xs = [encoder(xi) for xi in xs]
            features = encoded_names(spec)
        if xs[0].dtype == torch.uint8:  # images as the files hold them: normalized per batch
            mean, std = channel_statistics(xs[0])
            self.input_stats = {"mean": mean, "std": std}
            low, high = [0.0] * len(mean), [255.0] * len(mean)
        else:  # images: one mean and std; tabular features and sequences: one per feature
            per_column = xs[0].ndim == 2
            stats = statistics(xs[0], per_column)
            if spec is not None:  # indicators and one-hot columns stay 0/1: numbers only
                numeric = len(spec["numeric"])
                stats[0][numeric:], stats[1][numeric:] = 0.0, 1.0
            mean, std = (_as_list(t) for t in stats)
            low, high = (_as_list(t) for t in _extremes(xs[0], per_column))
            xs = standardize(*xs, stats=stats)  # the statistics once, not again
        self.input_range = _standardized_range(low, high, mean, std)
        self.preprocess = {
            "dtype": "uint8" if self.input_stats is not None else "float32",
            "mean": list(mean),
            "std": list(std),
            "low": list(low),  # the training split's raw range: new inputs are checked against it
            "high": list(high),
            "features": features,
        }
        if spec is not None:  # the raw columns a new input needs, and how they are encoded
            self.preprocess["columns"] = spec
        if multitask:
            self.preprocess["heads"] = self.head_info
        elif regression:
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
        if not self._fingerprint:
            digest = hashlib.sha256()
            for name in ("train", "val", "test"):
                x, y = (t.cpu() for t in self.splits[name])
                digest.update(name.encode() + y.numpy().tobytes() + str(tuple(x.shape)).encode())
                digest.update(x.numpy())  # the buffer itself: no copy of the split
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def _setup_text(
        self, plan: Any, rows: list[torch.Tensor], y: torch.Tensor, index: tuple[torch.Tensor, ...]
    ) -> None:
        """Token ids for each split, by the vocabulary of the training rows alone."""
        spec = fit_vocab(plan, rows[0])
        xs = _encoded_splits(plan, rows, spec, "texts")
        if self.task != "multitask":
            self._num_classes = len(self.classes) if self.classes else int(y.max()) + 1
        self.splits = {
            name: (xi.contiguous(), y[idx])
            for name, xi, idx in zip(("train", "val", "test"), xs, index, strict=True)
        }
        stats = text_stats(spec, {name: s[0] for name, s in self.splits.items()})
        self.preprocess = {"dtype": "int64", "mean": [0.0], "std": [1.0], "text": {**spec, **stats}}
        self.vocab_size = len(spec["vocab"])

    def _setup_pairs(self, plan: Any, rows: list[torch.Tensor]) -> None:
        """task=seq2seq: a vocabulary for the sources and one for the targets, each of the
        training split alone. Training serves one (source, reference) pair per reference;
        validation and test one row per source with all its references, (N, R, T)."""
        source_spec = fit_vocab(plan, rows[0])
        targets = plan.target_plan()
        target_rows = [plan.reference_rows(part) for part in rows]
        target_spec = fit_vocab(targets, target_rows[0][0])
        limit = plan.target_max_length
        encoded_targets, cut = [], 0
        for part, (refs, owner) in zip(rows, target_rows, strict=True):
            ids, lengths, n = encode_targets([targets.texts[i] for i in refs.tolist()], target_spec)
            if part is rows[0] and len(lengths) and int(lengths.min()) > limit:
                raise DataError(
                    f"data.target_max_length={limit} is shorter than every target of the"
                    f" training split (the shortest has {int(lengths.min())} tokens)"
                )
            encoded_targets.append((ids, owner))
            cut += n
        sources = [target_rows[0][1], *rows[1:]]  # training: a source per reference
        xs = _encoded_splits(plan, sources, source_spec, "sources")
        if cut:
            say(f"{cut} targets longer than data.target_max_length={limit} tokens were cut")
        ys = [encoded_targets[0][0]]
        for part, (ids, owner) in zip(rows[1:], encoded_targets[1:], strict=True):
            ys.append(group_references(ids, owner, part))
        self._num_classes = len(target_spec["vocab"])  # the decoder's output width
        self.splits = {
            name: (xi.contiguous(), yi.contiguous())
            for name, xi, yi in zip(("train", "val", "test"), xs, ys, strict=True)
        }
        stats = text_stats(source_spec, {name: s[0] for name, s in self.splits.items()})
        target_stats = text_stats(target_spec, {"train": ys[0], "val": ys[1][:, 0]})
        self.preprocess = {
            "dtype": "int64",
            "mean": [0.0],
            "std": [1.0],
            "text": {**source_spec, **stats},
            "target_text": {**target_spec, **target_stats},
        }
        self.vocab_size = len(source_spec["vocab"])

    @property
    def spec(self) -> DataSpec:
        """What the task, and a checkpoint's later readers, know of this data (after setup)."""
        return DataSpec(
            list(self.input_shape),
            self.num_outputs,
            self.fingerprint,
            self.test_fingerprint,
            self.target_stats,
            self.input_stats,
            self.classes,
            self.input_range,
            self.preprocess,
            self.vocab_size,
        )

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
        if self.head_info is not None:  # multitask: one slice per head
            return sum(head["width"] for head in self.head_info)
        return self._num_classes

    def _head_targets(
        self, heads: list[dict[str, Any]], y: torch.Tensor, train: torch.Tensor
    ) -> torch.Tensor:
        """task=multitask: each regression head standardized with the mean and std of the
        training split's labelled rows (`target_stats`: 0 and 1 for a classification head,
        whose class indices stay), NaN kept where a label is missing."""
        mean, std, info = [], [], []
        for j, head in enumerate(heads):
            column = y[train, j]
            labelled = column[~torch.isnan(column)]
            regression = head["kind"] == "regression"
            if len(labelled) < (2 if regression else 1):
                raise DataError(
                    f"task.heads[{j}] ({head['name']}): {len(labelled)} rows of the training split"
                    f" have a label in column {head['column']!r}; it needs"
                    f" {'2 (a mean and a std)' if regression else 'one'}"
                )
            if regression:
                mean.append(float(labelled.double().mean()))
                std.append(max(float(labelled.double().std()), 1e-8))
            else:
                mean.append(0.0)
                std.append(1.0)
            width = len(head["classes"]) if head["classes"] else 1
            info.append({**head, "width": width})
        self.target_stats = {"mean": mean, "std": std}
        self.head_info = info
        return (y - torch.tensor(mean)) / torch.tensor(std)

    def _loader(self, split: str, batch_size: int, shuffle: bool, **kwargs: Any) -> InMemoryLoader:
        rank, world = 0, 1
        if self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
            self.place_on_device(self.trainer.strategy.root_device)
        x, y = self.splits[split]
        return InMemoryLoader(x, y, batch_size, shuffle, self.seed, rank, world, **kwargs)

    def place_on_device(self, device: torch.device, free_bytes: int | None = None) -> bool:
        """Copy every split to `device` once, when it is an accelerator and the splits fit in
        half its free memory (`free_bytes`, asked of the device when not given): batches are
        then sliced where they are used instead of crossing the bus one by one, and uint8
        images (4x smaller than float32) are converted there per batch. True if they are
        there. Decided once per device; on the CPU, or with `data_on_device=never`, a no-op."""
        if device.type == "cpu" or self.data_on_device == "never":
            return False
        if self._placed_for != device:
            self._placed_for = device
            need = sum(x.nbytes + y.nbytes for x, y in self.splits.values())
            free = _free_memory(device) if free_bytes is None else free_bytes
            if free is not None and need <= free // 2:
                self.fingerprint  # noqa: B018 (hashed from host memory, before the copy)
                self.splits = {k: (x.to(device), y.to(device)) for k, (x, y) in self.splits.items()}
        return next(iter(self.splits.values()))[0].device == device

    @classmethod
    def for_run(cls, cfg: DictConfig) -> ArrayDataModule:
        """The data module of a training run, from its whole config. `trainer.fast_dev_run=N`
        trains N batches (Lightning would count N items of `steps_per_call` batches)."""
        t = cfg.trainer
        fast = int(t.fast_dev_run)
        limit = fast if fast else t.limit_train_batches
        every = 1.0 if fast else t.val_check_interval
        dp = private(cfg)  # privacy=dp: Poisson batches, one optimizer step each
        return cls(
            cfg.data,
            cfg.seed,
            t.steps_per_call,
            limit,
            t.accumulate_grad_batches,
            every,
            task=cfg.task.name,
            data_on_device=t.data_on_device,
            overfit_batches=t.overfit_batches,
            limit_eval_batches=(t.limit_val_batches, t.limit_test_batches),
            poisson=dp and bool(cfg.privacy.poisson),
            heads=task_heads(cfg.task),
        )

    def _epoch_plan(self, world_size: int) -> tuple[int, int | None]:
        """(batches per item, validations every N items or None) of a training epoch over
        `world_size` ranks (training shards are padded: every rank has as many batches)."""
        x, y = self.splits["train"]
        batches = InMemoryLoader(
            x, y, self.cfg.batch_size, True, world_size=world_size,
            limit_batches=self.limit_train_batches,
        ).num_batches  # fmt: skip
        return plan_items(batches, self.steps_per_call, self.accumulate, self.val_check_interval)

    def validation_period(self, world_size: int) -> int | None:
        """Validate every N training items (Lightning's batches), so that validations fall on
        whole optimizer steps (`plan_items`); None: once at the end of each epoch. The trainer
        asks once the ranks are known (`training/trainer.py: ValidationPeriod`)."""
        return self._epoch_plan(world_size)[1]

    def train_dataloader(self) -> InMemoryLoader:
        trainer = self.trainer
        bucket = self.cfg.get("bucket") and self.vocab_size is not None
        loader = self._loader(
            "train",
            self.cfg.batch_size,
            shuffle=not self.overfit_batches,
            limit_batches=self.limit_train_batches,
            items_done=None if trainer is None else partial(compat.epoch_items_done, trainer),
            lengths=(self.splits["train"][0] != PAD).sum(1).cpu() if bucket else None,
            poisson=self.poisson,
        )
        if self.teacher_outputs is not None:
            self.teacher_outputs = self.teacher_outputs.to(loader.x.device)  # a no-op once there
            loader.extra = self.teacher_outputs
        loader.batches_per_item, _ = plan_items(
            loader.num_batches, self.steps_per_call, self.accumulate, self.val_check_interval
        )
        return loader

    def val_dataloader(self) -> InMemoryLoader:
        return self._loader(
            "val", self.cfg.eval_batch_size, shuffle=False, limit_batches=self.limit_val_batches
        )

    def test_dataloader(self) -> InMemoryLoader:
        return self._loader(
            "test", self.cfg.eval_batch_size, shuffle=False, limit_batches=self.limit_test_batches
        )


def _encoded_splits(
    plan: Any, rows: list[torch.Tensor], spec: dict[str, Any], what: str
) -> list[torch.Tensor]:
    """Each split's texts (`rows` of `plan.texts`) as token ids, all padded to one width; one
    line with how many were cut at max_length."""
    encoded, cut = [], 0
    for part in rows:
        ids, n = encode([plan.texts[i] for i in part.tolist()], spec)
        encoded.append(ids)
        cut += n
    if cut:
        say(f"{cut} {what} longer than data.max_length={plan.max_length} tokens were cut")
    width = max(ids.shape[1] for ids in encoded)
    return [torch.nn.functional.pad(ids, (0, width - ids.shape[1]), value=PAD) for ids in encoded]


def _digest(x: torch.Tensor, y: torch.Tensor) -> str:
    """A hash of one split's inputs and labels as the data holds them (before standardization,
    which depends on the training split): the folds of k-fold share their test split's."""
    digest = hashlib.sha256(str(tuple(x.shape)).encode() + y.cpu().numpy().tobytes())
    digest.update(x.cpu().contiguous().numpy())
    return digest.hexdigest()[:16]


def _as_list(t: torch.Tensor) -> list[float]:
    return [float(v) for v in t.reshape(-1)]


def _extremes(train: torch.Tensor, per_column: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The training split's smallest and largest raw value (per column for tables)."""
    if per_column:
        return train.amin(0), train.amax(0)
    return train.min(), train.max()


def _standardized_range(
    low: list[float], high: list[float], mean: list[float], std: list[float]
) -> dict[str, list[float]]:
    """Raw bounds as standardized ones, and one raw unit (1/std) per channel or feature."""
    return {
        "low": [(lo - m) / s for lo, m, s in zip(low, mean, std, strict=True)],
        "high": [(hi - m) / s for hi, m, s in zip(high, mean, std, strict=True)],
        "unit": [1.0 / s for s in std],
    }


def _free_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA device; None where that cannot be asked (then nothing is copied)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return None


def task_heads(task: Any) -> list[dict[str, Any]] | None:
    """task=multitask's heads (completed), None for every other task."""
    return heads_of(task) if task.name == "multitask" else None
