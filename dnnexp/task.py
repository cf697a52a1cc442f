"""The training task: loss, regularizers and metrics, in one LightningModule.

Hot path: a training step is forward + loss + two tensor ops of bookkeeping (a bincount into the
epoch's confusion matrix, a running loss sum). Metrics are computed and logged once per epoch:
a per-step `self.log` costs about as much as a whole MLP step, and a torchmetrics collection
update ~30x more than the bincount (measured: 390 us vs 14 us per batch of 64).
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from dnnexp.augment import add_noise, augment_images
from dnnexp.models import build_model
from dnnexp.optim import build_optimizer, build_scheduler, param_groups

RECURRENT = ("rnn", "lstm", "gru")
NAN_ADVICE = (
    "Lower optimizer.lr or set reg.grad_clip; the weights of the last good epoch are in"
    " checkpoints/last.ckpt, if an epoch finished"
)


class EpochStats:
    """Confusion matrix and loss sum of one stage over one epoch."""

    def __init__(self, num_classes: int) -> None:
        self.c = num_classes
        self.confusion: torch.Tensor | None = None
        self.loss_sum: torch.Tensor | None = None

    def reset(self) -> None:
        self.confusion = self.loss_sum = None

    def update(self, logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        if self.confusion is None:
            self.confusion = torch.zeros(self.c * self.c, dtype=torch.long, device=y.device)
            self.loss_sum = torch.zeros((), dtype=torch.float64, device=y.device)
        self.confusion += torch.bincount(y * self.c + logits.argmax(1), minlength=self.c * self.c)
        self.loss_sum += loss.detach().double() * len(y)

    def compute(self, reduce_sum: Any = lambda t: t) -> dict[str, float]:
        """loss, accuracy and macro precision/recall/F1 (over classes seen in targets or
        predictions), summed over all processes by `reduce_sum` first."""
        if self.confusion is None:
            return {}
        conf = reduce_sum(self.confusion).view(self.c, self.c).double()
        loss_sum = reduce_sum(self.loss_sum)
        n, tp = conf.sum(), conf.diag()
        predicted, actual = conf.sum(0), conf.sum(1)
        seen = (predicted + actual) > 0
        precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), 0.0)
        recall = torch.where(actual > 0, tp / actual.clamp_min(1), 0.0)
        f1 = torch.where(
            precision + recall > 0,
            2 * precision * recall / (precision + recall).clamp_min(1e-12),
            0.0,
        )
        return {
            "loss": float(loss_sum / n),
            "acc": float(tp.sum() / n),
            "precision": float(precision[seen].mean()),
            "recall": float(recall[seen].mean()),
            "f1": float(f1[seen].mean()),
        }


class ClassificationTask(L.LightningModule):
    """Everything a run trains: the model, its loss with regularizers, metrics, optimizer.

    Hyperparameters are plain containers (the resolved config as a dict), so checkpoints load
    with `torch.load(..., weights_only=True)`.
    """

    def __init__(
        self, config: dict, input_shape: list[int], num_classes: int, data_fingerprint: str = ""
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        cfg = OmegaConf.create(config)
        self.cfg = cfg
        self.model = build_model(cfg.model, tuple(input_shape), num_classes, cfg.reg.dropout)
        # not a registered submodule: the checkpoint keeps only `model.*` keys
        object.__setattr__(
            self, "_forward", torch.compile(self.model) if cfg.trainer.compile else self.model
        )
        self.stats = {stage: EpochStats(num_classes) for stage in ("train", "val", "test")}
        self.history: list[dict[str, float]] = []  # one row per epoch: train/*, val/*, lr
        self.test_metrics: dict[str, float] = {}
        self._epoch_start, self._epoch_lr = 0.0, 0.0
        self._l1_params = (
            [p for p in self.model.parameters() if p.ndim > 1] if cfg.reg.l1 > 0 else []
        )
        # plain attributes for the hot path: a DictConfig lookup costs microseconds per step
        self._augment = cfg.reg.augment.enabled and cfg.reg.augment.strength > 0
        self._augment_strength = float(cfg.reg.augment.strength)
        self._sequence_input = cfg.model.name in RECURRENT
        self._label_smoothing = float(cfg.reg.label_smoothing)
        self._l1 = float(cfg.reg.l1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)

    # ------------------------------------------------------------------------------- steps
    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        if self._augment:
            augment = add_noise if self._sequence_input else augment_images
            x = augment(x, self._augment_strength)
        logits = self(x)
        smoothing = self._label_smoothing
        loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
        # the metric is the plain cross-entropy, comparable across regularizers
        plain = F.cross_entropy(logits.detach(), y) if smoothing > 0 else loss
        if loss.device.type == "cpu" and not torch.isfinite(loss):  # free on the CPU: no sync
            raise FloatingPointError(
                f"non-finite training loss ({float(loss)}) at step {self.global_step}"
                f" (epoch {self.current_epoch}, batch {batch_idx}). {NAN_ADVICE}"
            )
        self.stats["train"].update(logits.detach(), y, plain)
        if self._l1_params:
            loss = loss + self._l1 * sum(p.abs().sum() for p in self._l1_params)
        return loss

    def _eval_step(self, stage: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = batch
        logits = self(x)
        self.stats[stage].update(logits, y, F.cross_entropy(logits, y))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    # ------------------------------------------------------------------------------ epochs
    def _compute(self, stage: str) -> dict[str, float]:
        stats = self.stats[stage]
        metrics = stats.compute(lambda t: self.trainer.strategy.reduce(t, reduce_op="sum"))
        stats.reset()
        return {f"{stage}/{k}": v for k, v in metrics.items()}

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()
        self._epoch_lr = self.trainer.optimizers[0].param_groups[0]["lr"]

    def on_validation_start(self) -> None:
        """On accelerators the loss is checked once per epoch (a per-step check would sync),
        still before validation and checkpoints, so the last good checkpoint is kept."""
        loss_sum = self.stats["train"].loss_sum
        if self.trainer.state.fn == "fit" and loss_sum is not None and not torch.isfinite(loss_sum):
            raise FloatingPointError(
                f"non-finite training loss in epoch {self.current_epoch}. {NAN_ADVICE}"
            )

    def on_validation_epoch_end(self) -> None:
        """The epoch's row (train and val metrics) is complete here, before the checkpoint of
        this epoch is written, so a checkpoint always holds the history up to its own epoch."""
        val = self._compute("val")
        if self.trainer.state.fn != "fit":
            return
        train = self._compute("train")
        row = {
            "epoch": self.current_epoch,
            **train,
            **val,
            "lr": self._epoch_lr,  # at the start of the epoch
            "epoch_time_s": time.perf_counter() - self._epoch_start,
        }
        self.history.append(row)
        self._publish({**train, **val})
        for logger in self.loggers:  # the whole row at once
            logger.log_metrics(row, step=row["epoch"])

    def _publish(self, metrics: dict[str, float]) -> None:
        """Hand the epoch's metrics to the callbacks (checkpoint, early stopping) and the
        progress bar: what `self.log(key, value, logger=False)` does for each key, without its
        cost (~0.3 ms per call on a 2-core CPU, as each call walks all logged results; with ten
        keys that is several ms per epoch, more than an MLP's whole training step)."""
        self.trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
        self.trainer.progress_bar_metrics.update(
            {"val_acc": metrics["val/acc"], "train_loss": metrics["train/loss"]}
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dnnexp_history"] = [dict(row) for row in self.history]  # plain floats

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = [dict(row) for row in checkpoint.get("dnnexp_history", [])]

    def on_test_epoch_end(self) -> None:
        self.test_metrics = self._compute("test")
        self.log_dict(self.test_metrics, logger=False)

    # -------------------------------------------------------------------------- optimizers
    def configure_optimizers(self) -> Any:
        cfg = self.cfg
        optimizer = build_optimizer(cfg.optimizer, param_groups(self.model, cfg.reg.weight_decay))
        scheduler = build_scheduler(
            cfg.scheduler,
            optimizer,
            cfg.trainer.max_epochs,
            int(self.trainer.estimated_stepping_batches),
        )
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
