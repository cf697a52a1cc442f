"""Weight averaging as a regularizer: `reg=ema` (an exponential moving average of the weights,
updated after every optimizer step) and `reg=swa` (stochastic weight averaging, Izmailov et al.
2018: the plain mean of the weights after every optimizer step from `reg.swa.start` on, with its
own learning rate), both on `torch.optim.swa_utils.AveragedModel`.

The training loop keeps training the model's own weights; every evaluation (validation, so the
best checkpoint and early stopping; the test split) runs on the average, swapped into the model
in place for the duration (`evaluating`). Checkpoints hold the average as the model's weights,
so `dnnexp eval`, predict, export and `init_from` read it with no special case, and the
trained weights beside it (`TRAINED_KEY`), which a resume puts back (`restore`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

from dnnexp.config.validate import swa_start_epoch

TRAINED_KEY = "dnnexp_trained_weights"  # checkpoint: the model's own weights under an average
STATE_KEY = "dnnexp_average"  # checkpoint: steps averaged, SWA's learning-rate anchor


class WeightAverage:
    """The average of a model's weights, kept beside it on the same device."""

    def __init__(
        self,
        model: nn.Module,
        ema_decay: float = 0.0,
        ema_warmup: bool = True,
        swa: Any = None,
        train_inputs: Callable[[], Iterable[torch.Tensor]] | None = None,
    ) -> None:
        """`train_inputs`: gives the training split's input batches, for SWA's batch-norm
        statistics (recomputed once per new average, before it is evaluated or saved)."""
        self.ema = ema_decay > 0
        self._count = 0  # updates so far, kept here: reading `n_averaged` syncs an accelerator
        # EMA averages the norm layers' running statistics too (as timm's ModelEma); SWA copies
        # them and recomputes batch-norm statistics for the average before it is evaluated
        self.averaged = AveragedModel(
            model,
            multi_avg_fn=self._ema_update(ema_decay, ema_warmup) if self.ema else None,
            use_buffers=self.ema,
        )
        self.averaged.requires_grad_(False)
        self.start_epoch = 0
        self.swa_lr: float | None = None
        self.anneal_epochs = 1
        if swa is not None:
            self.start_epoch = swa["start_epoch"]
            self.swa_lr = swa["lr"]
            self.anneal_epochs = swa["anneal_epochs"]
        self.lr_anchor: list[float] | None = None  # SWA: each group's lr when SWA began
        self.has_batch_norm = any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()
        )
        self.train_inputs = train_inputs
        self._bn_fresh = False

    @classmethod
    def from_config(
        cls, reg: DictConfig, model: nn.Module, max_epochs: int, train_inputs: Any = None
    ) -> WeightAverage | None:
        if reg.ema.decay > 0:
            return cls(model, ema_decay=float(reg.ema.decay), ema_warmup=bool(reg.ema.warmup))
        if reg.swa.start is not None:
            swa = {
                "start_epoch": swa_start_epoch(float(reg.swa.start), max_epochs),
                "lr": None if reg.swa.lr is None else float(reg.swa.lr),
                "anneal_epochs": int(reg.swa.anneal_epochs),
            }
            return cls(model, swa=swa, train_inputs=train_inputs)
        return None

    @property
    def count(self) -> int:
        """Optimizer steps averaged so far (0: nothing to evaluate yet, the model stands)."""
        return self._count

    def averaging(self, epoch: int) -> bool:
        return self.ema or epoch >= self.start_epoch

    def update(self, model: nn.Module) -> None:
        """After an optimizer step (`averaging(epoch)` checked by the caller, once an epoch)."""
        self.averaged.update_parameters(model)
        self._count += 1
        self._bn_fresh = False

    def _ema_update(self, decay: float, warmup: bool) -> Any:
        """torch's EMA update; with `warmup`, the decay at the n-th update is
        min(decay, (1 + n) / (10 + n)), as TensorFlow's ExponentialMovingAverage with
        num_updates and timm's ModelEma: early averages do not hold on to the initial weights.
        n is this object's count (called before `update` adds the step)."""
        if not warmup:
            return get_ema_multi_avg_fn(decay)

        @torch.no_grad()
        def update(averaged: list, current: list, n_averaged: torch.Tensor) -> None:
            n = self._count
            get_ema_multi_avg_fn(min(decay, (1 + n) / (10 + n)))(averaged, current, n_averaged)

        return update

    # ------------------------------------------------------------------ SWA's learning rate
    def swa_lrs(self, optimizer: torch.optim.Optimizer, epoch: int) -> list[float] | None:
        """The learning rates of `epoch` under SWA (None before it starts, or when
        `reg.swa.lr` is null: the schedule's rate at the start is kept): from each group's
        rate when SWA began to `reg.swa.lr` over `anneal_epochs`, cosine, as `SWALR`."""
        if self.ema or epoch < self.start_epoch:
            return None
        if self.lr_anchor is None:
            self.lr_anchor = [float(g["lr"]) for g in optimizer.param_groups]
        if self.swa_lr is None:
            return list(self.lr_anchor)
        t = min(1.0, (epoch - self.start_epoch + 1) / self.anneal_epochs)
        alpha = (1 - math.cos(math.pi * t)) / 2
        return [self.swa_lr * alpha + lr * (1 - alpha) for lr in self.lr_anchor]

    # -------------------------------------------------------------------------- evaluation
    def _refresh_batch_norm(self) -> None:
        """SWA: the average's batch-norm statistics computed on the training split (its
        buffers are the model's until then); EMA averages them with the weights."""
        if self.ema or not self.has_batch_norm or self._bn_fresh or self.train_inputs is None:
            return
        with torch.random.fork_rng(devices=_devices(self.averaged)):  # training's RNG untouched
            update_bn(self.train_inputs(), self.averaged.module)
        self._bn_fresh = True

    @contextlib.contextmanager
    def evaluating(self, model: nn.Module) -> Iterator[None]:
        """The average's weights in `model` for the body, the trained ones back after."""
        if self.count == 0:
            yield
            return
        self._refresh_batch_norm()
        trained = [t.detach().clone() for t in _tensors(model)]
        _copy(_tensors(model), list(_tensors(self.averaged.module)))
        try:
            yield
        finally:
            _copy(_tensors(model), trained)

    # ------------------------------------------------------------------------- checkpoints
    def save(self, checkpoint: dict[str, Any], prefix: str = "model.") -> None:
        """The average becomes the checkpoint's model weights; the trained ones go beside."""
        checkpoint[STATE_KEY] = {"count": self.count, "lr_anchor": self.lr_anchor}
        if self.count == 0:
            return
        self._refresh_batch_norm()
        state = checkpoint["state_dict"]
        checkpoint[TRAINED_KEY] = {k: v for k, v in state.items() if k.startswith(prefix)}
        for name, tensor in self.averaged.module.state_dict().items():
            state[prefix + name] = tensor.detach().clone()

    def restore(self, checkpoint: dict[str, Any], prefix: str = "model.") -> None:
        """Before the checkpoint's weights load (`on_load_checkpoint`): its average into this
        one, its trained weights back in its `state_dict` for the model."""
        info = checkpoint.get(STATE_KEY)
        if info is None:
            return
        self.lr_anchor = info.get("lr_anchor")
        count = int(info.get("count", 0))
        self.averaged.n_averaged.fill_(count)
        self._count = count
        self._bn_fresh = True  # saved after `_refresh_batch_norm`
        trained = checkpoint.get(TRAINED_KEY)
        if count == 0 or trained is None:
            return
        state = checkpoint["state_dict"]
        averaged = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        self.averaged.module.load_state_dict(averaged)
        state.update(trained)


def _tensors(model: nn.Module) -> Iterator[torch.Tensor]:
    yield from (p.detach() for p in model.parameters())
    yield from (b.detach() for b in model.buffers())


def _copy(targets: Iterator[torch.Tensor], sources: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for target, source in zip(targets, sources, strict=True):
            target.copy_(source)


def _devices(model: nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
