"""The training loop every task shares, in one LightningModule: the model, the task's objective
(loss, metrics, score), the regularizers that plug into the batch and the loss, the optimizer.

Hot path: a training step is forward + loss + the objective's per-batch bookkeeping
(`tasks/metrics.py`: list appends). Metrics are computed and logged once per epoch: a per-step
`self.log` costs about as much as a whole MLP step, and a torchmetrics collection update an
order of magnitude more than a bincount.

Optimization is manual so that one Lightning `training_step` can take several optimizer steps
(`trainer.steps_per_call` batches arrive as one item): Lightning's loop has a fixed cost per item,
a large share of a small model's step. Steps go through `manual_backward` and the
LightningOptimizer wherever those do more than hooks and a step count (DDP gradient sync, a
gradient scaler, mixed precision), so everything works as in automatic optimization; on one
fp32 device the task calls them directly (`on_train_start`). Learning-rate schedules are
stepped here (per step or per epoch).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from functools import partial
from typing import Any

import lightning as L
import torch
from omegaconf import OmegaConf

from dnnexp import compat
from dnnexp.config.errors import RunError
from dnnexp.config.schema import DATA_SCHEMAS, MODEL_SCHEMAS
from dnnexp.data.spec import DataSpec
from dnnexp.models import build_model
from dnnexp.tasks import build_objective
from dnnexp.tasks.attacks import RobustAccuracy
from dnnexp.tasks.averaging import WeightAverage
from dnnexp.tasks.optim import build_optimizer, build_scheduler, param_groups
from dnnexp.tasks.privacy import PrivateTraining
from dnnexp.tasks.regularizers import batch_transforms, loss_terms

NAN_ADVICE = (
    "Lower optimizer.lr or set reg.grad_clip; the weights of the last good epoch are in"
    " checkpoints/last.ckpt, if an epoch finished"
)


class TrainingModule(L.LightningModule):
    """Everything a run trains: the model, its objective, regularizers, metrics, optimizer.

    Hyperparameters are plain containers (the resolved config as a dict; `target_stats`, the
    training split's target mean and std under regression; `input_stats`, the per-channel mean
    and std of uint8 images; the class names), so checkpoints load with
    `torch.load(..., weights_only=True)`.
    """

    def __init__(
        self,
        config: dict,
        data: DataSpec,
        teacher: torch.nn.Module | None = None,
        pretrained: list[str] | None = None,
    ) -> None:
        """`config`: the resolved config as a plain dict; `data`: what the task knows of its
        data (kept whole in the hyperparameters). `teacher`: a frozen model for `distill`
        (training only; not a hyperparameter, not a submodule, so never in a checkpoint).
        `pretrained`: the names of the parameters `init_from` loaded (the backbone: its own
        lr, frozen with freeze=backbone)."""
        super().__init__()
        # logger=False: the trackers get the flattened config from `trackers.start`, not these
        # (a vocabulary, the class list) at every fit, which a resumed MLflow run would refuse
        self.save_hyperparameters(
            {"config": config, **data.hparams(), "pretrained": pretrained}, logger=False
        )
        cfg = OmegaConf.create(config)
        self.cfg = cfg
        preprocess = data.preprocess or {}
        self.objective = build_objective(
            cfg,
            data.num_outputs,
            data.target_stats,
            preprocess.get("target_text"),
            preprocess.get("heads"),  # task=multitask
        )
        self.model = build_model(
            cfg.model,
            tuple(data.input_shape),
            data.num_outputs,
            cfg.reg.dropout,
            data.vocab_size,
            decoder=cfg.task.name == "seq2seq",
        )
        # not a registered submodule: the checkpoint keeps only `model.*` keys
        object.__setattr__(
            self, "_forward", torch.compile(self.model) if cfg.trainer.compile else self.model
        )
        # privacy=dp: per-sample gradient hooks on the model, the DP optimizer, the accountant
        self._privacy = PrivateTraining.from_config(cfg)
        if self._privacy is not None:
            self._privacy.attach(self.model)
        self.stats = {stage: self.objective.new_stats() for stage in ("train", "val", "test")}
        self.history: list[dict[str, float]] = []  # one row per epoch: train/*, val/*, lr
        self._history_json: list[str] = []  # history[i] encoded, each row once
        self.test_metrics: dict[str, float] = {}
        # classification: the test split's confusion matrix (row: target), summed over ranks
        self.test_confusion: list[list[int]] | None = None
        self._summed: torch.Tensor | None = None  # the last epoch sums `_compute` reduced
        self._epoch_start, self._epoch_lr = 0.0, 0.0
        reads_rows = MODEL_SCHEMAS[cfg.model.name].reads == "rows"
        natural = DATA_SCHEMAS[cfg.data.name].natural_images
        self._batch_transforms = batch_transforms(
            cfg.reg,
            tuple(data.input_shape),
            reads_rows,
            natural,
            self.model,
            self.objective.eval_loss,
            data.input_range,
        )
        self._robust = RobustAccuracy(cfg.get("eval"), data.input_range)  # eval.attacks
        self._loss_terms = loss_terms(cfg.reg, self.model, cfg.get("distill"), teacher)
        self._task_weight = math.prod(getattr(t, "task_weight", 1.0) for t in self._loss_terms)
        object.__setattr__(self, "_teacher", teacher)  # moved with the model (on_fit_start)
        self._pretrained = set(pretrained or [])
        self._frozen: list[torch.nn.Parameter] = []  # the backbone, while it is frozen
        # plain attributes for the hot path: a DictConfig lookup costs microseconds per step
        self._grad_clip = float(cfg.reg.grad_clip)
        self._batch_size = int(cfg.data.batch_size)
        self._accumulate = int(cfg.trainer.accumulate_grad_batches)
        self._log_every = cfg.trainer.log_every_n_steps  # None: one logger row per validation
        self._max_steps = -1  # Lightning's (fast_dev_run sets it too), read in on_train_start
        # this epoch's training loader: batches per item and in all (on_train_epoch_start)
        self._batches_per_item, self._epoch_batches = 1, 1
        self._backward: Any = self.manual_backward
        self._skip_step_wrapper = False  # decided in on_train_start
        self._scheduler_monitor: str | None = None  # ReduceLROnPlateau's metric
        # reg=ema / reg=swa: evaluations run on the average (not a submodule: checkpoints hold
        # it as the model's weights, `averaging.py`)
        average = WeightAverage.from_config(
            cfg.reg, self.model, cfg.trainer.max_epochs, self._train_inputs
        )
        object.__setattr__(self, "_average", average)
        self._averaging = False  # this epoch's steps update the average
        self._swa_active = False  # this epoch's learning rate is SWA's, not the schedule's
        self._evaluating = contextlib.ExitStack()
        self._channels_last = bool(cfg.trainer.channels_last)
        if self._channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.automatic_optimization = False
        # uint8 images are normalized per batch, on the batch's device (not kept as float32)
        shape = (1, -1, 1, 1)
        stats = data.input_stats or {}
        mean, std = stats.get("mean", [0.0]), stats.get("std", [1.0])
        self.register_buffer("_input_mean", torch.tensor(mean).view(shape), persistent=False)
        self.register_buffer("_input_std", torch.tensor(std).view(shape), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """A uint8 image batch as standardized float32; any other input as it is."""
        if x.dtype != torch.uint8:
            return x
        return (x.to(torch.float32) - self._input_mean) / self._input_std

    def forward(self, x: torch.Tensor, *targets: Any) -> torch.Tensor:
        """The model's outputs; `targets`: what a decoder also reads (task=seq2seq)."""
        x = self.normalize(x)
        if self._channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._forward(x, *targets)

    # ------------------------------------------------------------------------------- steps
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """One item of batches: `trainer.accumulate_grad_batches` batches per optimizer step
        (the last step of an epoch takes what is left), up to `trainer.steps_per_call` steps.
        Each batch's loss is divided by the accumulation, as Lightning does, so accumulating k
        batches of n gives the gradient of one batch of k*n."""
        if self._privacy is not None:
            return self._private_step(batch, batch_idx)
        x, y, *extra = batch  # extra: a teacher's outputs for these batches, if precomputed
        optimizer, scheduler, backward = self.optimizers(), self._step_scheduler, self._backward
        step = partial(self._plain_step, optimizer) if self._skip_step_wrapper else optimizer.step
        b, k, done, first_step = self._batch_size, self._accumulate, 0, self.global_step
        first = batch_idx * self._batches_per_item  # this item's first batch in the epoch
        for start in range(0, len(y), b):
            position = first + done + 1  # batches of this epoch trained, this one included
            part = slice(start, start + b)
            loss = self._loss(x[part], y[part], *(t[part] for t in extra))
            if (position - 1) % k == 0:  # the first batch of an optimizer step
                optimizer.zero_grad(set_to_none=True)
            backward(loss / k if k > 1 else loss)
            done += 1
            if position % k and position < self._epoch_batches:
                continue  # accumulate
            step()
            self._after_step(scheduler, (position - 1) % k + 1)
            if 0 < self._max_steps <= self.global_step:
                break  # Lightning checks max_steps between items only
        if x.device.type == "cpu":  # free on the CPU; accelerators check once per epoch
            self._check_finite(self.stats["train"].losses[-done:], first, first_step)

    def _after_step(self, scheduler: Any, batches: int) -> None:
        """After each optimizer step: the per-step schedule, the weight average, the step log
        (`batches`: this step's batches)."""
        if scheduler is not None:
            scheduler.step()
        if self._averaging:
            self._average.update(self.model)
        if batches and self._log_every and self.global_step % self._log_every == 0:
            self._log_step(batches)

    def _private_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        """privacy=dp: an item of Poisson batches (x, y and each batch's size), each one DP-SGD
        step (the DPOptimizer clips each sample's gradient and adds the noise) and one
        accountant step. An empty batch still steps: noise only, as the accountant counts it."""
        x, y, *poisson = batch  # privacy.poisson=false: fixed batches of data.batch_size
        b = self._batch_size
        sizes = (
            poisson[0].tolist() if poisson else [min(b, len(y) - i) for i in range(0, len(y), b)]
        )
        optimizer = self.optimizers()
        step = partial(self._plain_step, optimizer) if self._skip_step_wrapper else optimizer.step
        start, trained, first_step = 0, 0, self.global_step
        for size in sizes:
            part = slice(start, start + size)
            start += size
            optimizer.zero_grad(set_to_none=True)
            if size:
                self._backward(self._loss(x[part], y[part]))
                trained += 1
            else:
                self._privacy.empty_batch(self.model.parameters())
            step()
            self._privacy.stepped()
            self._after_step(self._step_scheduler, 1 if size else 0)
            if 0 < self._max_steps <= self.global_step:
                break  # Lightning checks max_steps between items only
        if trained and x.device.type == "cpu":
            first = batch_idx * self._batches_per_item
            self._check_finite(self.stats["train"].losses[-trained:], first, first_step)

    def _log_step(self, batches: int) -> None:
        """`trainer.log_every_n_steps`: this optimizer step's training loss (the mean over its
        accumulated batches) and learning rate, one logger row at `step`."""
        loss = float(torch.stack(self.stats["train"].losses[-batches:]).mean())
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        row = {"step": self.global_step, "train/loss_step": loss, "lr_step": lr}
        for logger in self.loggers:
            logger.log_metrics(row, step=self.global_step)

    def _loss(self, x: torch.Tensor, y: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        """The batch transforms, the objective's loss (its plain loss goes to the metrics), then
        each loss term of the batch and the output added."""
        x = self.normalize(x)
        for transform in self._batch_transforms:
            x, y = transform(x, y)
        output = self.objective.train_output(self, x, y)
        loss, plain = self.objective.loss(output, y)
        self.stats["train"].update(output.detach(), y, plain)
        if self._task_weight != 1.0:
            loss = loss * self._task_weight
        for term in self._loss_terms:
            loss = loss + term(x, y, output, *extra)
        return loss

    def _check_finite(self, losses: list[torch.Tensor], first: int, first_step: int) -> None:
        """Stop at the item's first non-finite loss, naming its optimizer step and its batch
        (`first`: the item's first batch in the epoch; `first_step`: the step it began at)."""
        finite = torch.isfinite(torch.stack(losses))
        if bool(finite.all()):
            return
        i = int((~finite).nonzero()[0])
        raise FloatingPointError(
            f"non-finite training loss ({float(losses[i])}) at step"
            f" {first_step + i // self._accumulate} (epoch {self.current_epoch},"
            f" batch {first + i}). {NAN_ADVICE}"
        )

    @property
    def privacy_ledger(self) -> dict[str, Any] | None:
        """privacy=dp: ε spent and what it was computed from (summary.json, the model card)."""
        return None if self._privacy is None else self._privacy.ledger()

    def use_pretrained(self, names: list[str]) -> None:
        """The parameters `init_from` loaded (kept in the hyperparameters for a resume)."""
        self._pretrained = set(names)
        self.hparams["pretrained"] = list(names)

    @property
    def transforms_batches(self) -> bool:
        return bool(self._batch_transforms)

    @torch.no_grad()
    def teacher_outputs(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """The distillation teacher's outputs for inputs `x` (a whole split), in batches."""
        teacher = self._teacher.to(x.device)
        parts = [
            teacher(self.normalize(x[i : i + batch_size])) for i in range(0, len(x), batch_size)
        ]
        return torch.cat(parts)

    def on_fit_start(self) -> None:
        if self._teacher is not None:
            self._teacher.to(self.device)
        if self._average is not None:
            self._average.averaged.to(self.device)

    def on_test_start(self) -> None:
        if self._average is not None:
            self._average.averaged.to(self.device)

    def on_train_start(self) -> None:
        """On one device without a gradient scaler, `manual_backward` only adds hook calls
        per step: call `backward` directly there. With plain fp32 as
        well, and no callback that hooks `on_before_optimizer_step`, Lightning's optimizer
        wrapper does nothing but hooks and its step count around `optimizer.step()`, at a
        cost per step: `_plain_step` does the same without the detour."""
        from lightning.pytorch.callbacks import Callback
        from lightning.pytorch.plugins.precision import Precision
        from lightning.pytorch.strategies import SingleDeviceStrategy

        trainer = self.trainer
        if self._privacy is not None and trainer.world_size > 1:
            raise RunError(
                f"privacy=dp trains on one device; this run has {trainer.world_size} processes"
                " (trainer.devices=1, trainer.strategy=auto)"
            )
        self._start_epoch()  # for a run resumed mid-epoch, which skips on_train_epoch_start
        self._freeze_for(self.current_epoch)
        plain = isinstance(trainer.strategy, SingleDeviceStrategy) and (
            getattr(trainer.precision_plugin, "scaler", None) is None
        )
        self._max_steps = int(trainer.max_steps)
        self._backward = torch.Tensor.backward if plain else self.manual_backward
        self._skip_step_wrapper = (
            plain
            and type(trainer.precision_plugin) is Precision  # 32-true: no autocast, no casts
            and all(
                type(c).on_before_optimizer_step is Callback.on_before_optimizer_step
                for c in trainer.callbacks
            )
        )
        if self._skip_step_wrapper:
            compat.check_lightning_optimizer_hooks(self.optimizers())

    def _plain_step(self, optimizer: Any) -> None:
        """What `LightningOptimizer.step()` does on one device in fp32: Lightning's step count
        (its before/after-step callbacks), this module's `on_before_optimizer_step` (gradient
        clipping), then the optimizer's own step."""
        compat.lightning_step(optimizer, partial(self._clip_and_step, optimizer.optimizer))

    def _clip_and_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.on_before_optimizer_step(optimizer)
        optimizer.step()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Called by the precision plugin after it unscaled the gradients (16-mixed). A frozen
        backbone's gradients are dropped here (after DDP synced them, so every rank drops the
        same): the optimizer then leaves those parameters alone, weight decay and momentum
        included, while `requires_grad` (and DDP's view of the model) stays as it was."""
        for p in self._frozen:
            p.grad = None
        if self._grad_clip > 0:
            self.clip_gradients(
                optimizer, gradient_clip_val=self._grad_clip, gradient_clip_algorithm="norm"
            )

    def _eval_step(self, stage: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = batch
        output, loss = self.objective.evaluate(self, x, y, stage)
        self.stats[stage].update(output, y, loss)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)
        if self._robust:
            x = self.normalize(batch[0])
            self._robust.update(self._forward, self.objective.eval_loss, x, batch[1])

    # ------------------------------------------------------------------------------ epochs
    def _compute(self, stage: str) -> dict[str, float]:
        stats = self.stats[stage]
        self._summed = None
        metrics = stats.compute(self._reduce_sum)
        stats.reset()
        return {f"{stage}/{k}": v for k, v in metrics.items()}

    def _reduce_sum(self, sums: torch.Tensor) -> torch.Tensor:
        self._summed = self.trainer.strategy.reduce(sums, reduce_op="sum")
        return self._summed

    def on_train_epoch_start(self) -> None:
        """Not called when a run resumes in the middle of an epoch: `_start_epoch` is then
        called by `on_train_start`, and the epoch's lr comes from the checkpoint."""
        self._start_epoch()
        self._step_epoch_scheduler()
        if self._swa_active:
            optimizer = self.trainer.optimizers[0]
            lrs = self._average.swa_lrs(optimizer, self.current_epoch)
            for group, lr in zip(optimizer.param_groups, lrs, strict=True):
                group["lr"] = lr
        self._epoch_lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self._freeze_for(self.current_epoch)

    def _freeze_for(self, epoch: int) -> None:
        """freeze=backbone: the pretrained parameters are frozen until `freeze_epochs`."""
        cfg = self.cfg
        until = cfg.get("freeze_epochs")
        frozen = cfg.get("freeze") == "backbone" and (until is None or epoch < until)
        named = dict(self.model.named_parameters())
        self._frozen = [named[n] for n in sorted(self._pretrained)] if frozen else []

    def _start_epoch(self) -> None:
        loader = self.trainer.train_dataloader
        self._batches_per_item = getattr(loader, "batches_per_item", 1)
        self._epoch_batches = getattr(loader, "num_batches", len(loader))
        self._epoch_start = time.perf_counter()
        average = self._average
        self._averaging = average is not None and average.averaging(self.current_epoch)
        self._swa_active = self._averaging and not average.ema

    def _step_epoch_scheduler(self) -> None:
        """Per-epoch schedules step at the start of each epoch, up to the current epoch: the
        same learning rates as stepping after each epoch, and a resumed run catches up from
        its checkpoint's scheduler state. ReduceLROnPlateau steps after each validation
        instead (`_step_plateau`)."""
        config = self._scheduler_config
        if config is None or config.interval != "epoch" or self._scheduler_monitor:
            return
        if self._swa_active:  # SWA sets the learning rate from its start on
            return
        scheduler = config.scheduler
        while scheduler.last_epoch < self.current_epoch:
            scheduler.step()

    def _step_plateau(self, metrics: dict[str, float]) -> None:
        """ReduceLROnPlateau sees each validation's monitored value once, as early stopping
        does, so its patience counts validations; its state goes into this validation's
        checkpoint, which a resume continues from."""
        if self._scheduler_monitor and not self._swa_active:
            self._scheduler_config.scheduler.step(metrics[self._scheduler_monitor])

    @property
    def _scheduler_config(self) -> Any:
        configs = self.trainer.lr_scheduler_configs
        return configs[0] if configs else None

    @property
    def _step_scheduler(self) -> Any:
        config = self._scheduler_config
        if config is None or config.interval != "step" or self._swa_active:
            return None
        return config.scheduler

    # ------------------------------------------------------------------- weight averaging
    def _evaluate_average(self) -> None:
        """reg=ema / reg=swa: the average's weights in the model until `_train_weights`."""
        if self._average is not None:
            self._evaluating.enter_context(self._average.evaluating(self.model))

    def _train_weights(self) -> None:
        self._evaluating.close()

    def _train_inputs(self) -> Any:
        """The training split's inputs in batches, in order (SWA's batch-norm statistics);
        every rank sees the whole split, so every rank computes the same statistics."""
        x = self.trainer.datamodule.splits["train"][0]
        b = self._batch_size
        return (self.normalize(x[i : i + b].to(self.device)) for i in range(0, len(x), b))

    def on_validation_epoch_start(self) -> None:
        self._evaluate_average()

    def on_test_epoch_start(self) -> None:
        self._evaluate_average()

    def on_validation_start(self) -> None:
        """On accelerators the loss is checked once per epoch (a per-step check would sync),
        still before validation and checkpoints, so the last good checkpoint is kept."""
        loss_sum = self.stats["train"].loss_sum
        if self.trainer.state.fn == "fit" and loss_sum is not None and not torch.isfinite(loss_sum):
            raise FloatingPointError(
                f"non-finite training loss in epoch {self.current_epoch}. {NAN_ADVICE}"
            )

    def on_validation_epoch_end(self) -> None:
        """One row per validation (train metrics since the validation before, val metrics),
        complete before this validation's checkpoint is written, so a checkpoint always holds
        the history up to itself. `epoch` and `step` (optimizer steps so far) say which
        validation a row is: one per epoch by default, several with val_check_interval < 1."""
        self._train_weights()
        val = self._compute("val")
        if self.trainer.state.fn != "fit" or self.trainer.sanity_checking:
            return
        train = self._compute("train")
        row = {
            "epoch": self.current_epoch,
            "step": self.global_step,
            **train,
            **val,
            "lr": self._epoch_lr,  # at the start of the epoch
            "epoch_time_s": time.perf_counter() - self._epoch_start,
        }
        if self._privacy is not None:  # the ledger: ε spent so far
            row["privacy/epsilon"] = self._privacy.epsilon()
        self.history.append(row)
        self._step_plateau(val)
        self._publish({**train, **val})
        for logger in self.loggers:  # the whole row at once
            logger.log_metrics(row, step=row["epoch"])

    def _publish(self, metrics: dict[str, float]) -> None:
        """Hand the epoch's validation metrics to the callbacks (checkpoint, early stopping)
        and the progress bar: what `self.log(key, value, logger=False)` does for each key,
        without its cost (each call walks all logged results: per epoch, more than an MLP's
        whole training step)."""
        self.trainer.callback_metrics.update(
            {k: torch.tensor(v) for k, v in metrics.items() if k.startswith("val/")}
        )
        self.trainer.progress_bar_metrics.update(self.objective.progress(metrics))
        if self._privacy is not None:  # the budget spent so far, beside the metrics
            self.trainer.progress_bar_metrics["ε"] = self._privacy.epsilon()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # one JSON string: loads with weights_only=True and is copied in no time (a list of
        # dicts is deep-copied for each checkpoint held in memory). Rows are encoded once each:
        # encoding the whole history at every save grows with the epochs.
        encoded = self._history_json
        encoded.extend(json.dumps(row) for row in self.history[len(encoded) :])
        checkpoint["dnnexp_history"] = "[" + ",".join(encoded) + "]"
        checkpoint["dnnexp_epoch_lr"] = self._epoch_lr  # for a resume in the middle of an epoch
        if self._average is not None:
            self._average.save(checkpoint)
        if self._privacy is not None:
            self._privacy.save(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._average is not None:
            self._average.restore(checkpoint)
        if self._privacy is not None and self.trainer.state.fn == "fit":
            self._privacy.restore(checkpoint)
        self.history = self.history_of(checkpoint)
        self._history_json = []
        self._epoch_lr = float(checkpoint.get("dnnexp_epoch_lr", 0.0))

    @staticmethod
    def history_of(checkpoint: dict[str, Any]) -> list[dict[str, float]]:
        """The per-epoch rows stored in a checkpoint."""
        history = checkpoint.get("dnnexp_history", "[]")
        return json.loads(history) if isinstance(history, str) else list(history)

    def on_test_epoch_end(self) -> None:
        self.test_metrics = self._compute("test")
        c = getattr(self.stats["test"], "c", None)  # classification (ClassificationStats)
        if c is not None and self._summed is not None:  # for the model card
            self.test_confusion = self._summed[: c * c].reshape(c, c).long().tolist()
        reduce_sum = partial(self.trainer.strategy.reduce, reduce_op="sum")
        self.test_metrics.update(self.objective.test_extras(reduce_sum))
        if self._robust:  # accuracy under attack, over all ranks
            self.test_metrics.update(self._robust.compute(reduce_sum, self.device))
        # float64: the values reach the main process exactly after ddp_spawn
        exact = {k: torch.tensor(v, dtype=torch.float64) for k, v in self.test_metrics.items()}
        self.log_dict(exact, logger=False)
        self._train_weights()

    # -------------------------------------------------------------------------- optimizers
    def _total_steps(self) -> int:
        """Optimizer steps of the whole run: batches (not Lightning items) over the
        accumulation, times epochs, or `trainer.max_steps` if that comes first."""
        # the data module's own loader: Lightning's estimated_stepping_batches would set up the
        # fit loop's loader before a checkpoint is restored, and then not restore its position
        datamodule = self.trainer.datamodule
        loader = datamodule.train_dataloader() if datamodule is not None else None
        batches = getattr(loader, "num_batches", None)
        if batches is None:
            return int(self.trainer.estimated_stepping_batches)
        steps = math.ceil(batches / self._accumulate) * self.trainer.max_epochs
        max_steps = self.trainer.max_steps
        return min(steps, max_steps) if max_steps > 0 else steps

    def configure_optimizers(self) -> Any:
        cfg = self.cfg
        ratio = cfg.optimizer.get("backbone_lr_ratio", 1.0)
        backbone_lr = cfg.optimizer.lr * ratio if self._pretrained and ratio != 1.0 else None
        groups = param_groups(self.model, cfg.reg.weight_decay, self._pretrained, backbone_lr)
        optimizer = build_optimizer(cfg.optimizer, groups)
        if self._privacy is not None:
            train_x = self.trainer.datamodule.splits["train"][0]
            self._privacy.plan(len(train_x), self._batch_size, self._total_steps())
            optimizer = self._privacy.wrap(optimizer)
        scheduler = build_scheduler(
            cfg.scheduler,
            optimizer,
            cfg.trainer.max_epochs,
            self._total_steps(),
        )
        if scheduler is None:
            return optimizer
        # Lightning ignores `monitor` under manual optimization: _step_epoch_scheduler reads it
        self._scheduler_monitor = scheduler.pop("monitor", None)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
