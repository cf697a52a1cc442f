"""Build the Lightning Trainer from the `trainer`, `logger` and `reg` groups."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping, RichModelSummary
from omegaconf import DictConfig

from dnnexp.config.metrics import mode
from dnnexp.training import trackers
from dnnexp.training.checkpoint import AtomicCheckpointIO, BestAndLastCheckpoint, RNGState
from dnnexp.training.ddp import launch_ranks_as_this_job
from dnnexp.training.progress import ThrottledRichProgressBar


def build_trainer(
    cfg: DictConfig,
    run_dir: Path,
    overrides: list[str],
    model_summary: bool = True,
    resume: dict | None = None,
    extra_callbacks: Sequence[Callback] = (),
    loggers: list | None = None,
) -> L.Trainer:
    """`resume`: the checkpoint a resumed run continues from; `extra_callbacks`: given by the
    caller (a search trial's TrialPruning: the trainer knows nothing of searches); `loggers`:
    the run's (`trackers.build`), else metrics.csv and the trackers the config names."""
    t, reg = cfg.trainer, cfg.reg
    monitor = reg.early_stopping.monitor  # "best" means the same thing to checkpoints and stopping
    once_per_epoch = t.val_check_interval == 1.0 and t.check_val_every_n_epoch == 1
    callbacks: list[Callback] = [
        BestAndLastCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="best",
            monitor=monitor,
            mode=mode(monitor),
            save_last=True,
            auto_insert_metric_name=False,
            enable_version_counter=False,  # best.ckpt stays best.ckpt, also after a resume
            # at each validation, where it is not once at the end of every epoch (Lightning
            # decides by trainer.val_check_interval == 1.0, which a period of 1 item also is)
            save_on_train_epoch_end=None if once_per_epoch else False,
        ),
        RNGState(),
        ValidationPeriod(),
    ]
    if cfg.prune.amount > 0:  # before EarlyStopping: gradual pruning restarts its patience
        from dnnexp.training.weight_pruning import MagnitudePruning

        callbacks.append(MagnitudePruning.from_config(cfg))
    if reg.early_stopping.enabled:
        callbacks.append(
            EarlyStopping(
                monitor=monitor,
                mode=mode(monitor),
                patience=reg.early_stopping.patience,
                min_delta=reg.early_stopping.min_delta,
                check_on_train_epoch_end=None if once_per_epoch else False,
            )
        )
    callbacks += list(extra_callbacks)  # the caller's: a search trial's pruning
    if t.progress_bar:
        callbacks.append(ThrottledRichProgressBar())
    model_summary = model_summary and t.model_summary
    if model_summary:
        callbacks.append(RichModelSummary(max_depth=1))
    # used whenever Lightning starts the ranks by re-running the command (strategy ddp, or auto
    # with several devices); ddp_spawn/ddp_fork, torchrun and srun start them otherwise
    launch_ranks_as_this_job(run_dir, overrides)
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=t.precision,
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        max_time=t.max_time,
        fast_dev_run=t.fast_dev_run,
        # limit_train_batches is applied by the training loader, which counts batches (not items);
        # so is val_check_interval (the data module turns it into items, see plan_items), and
        # accumulate_grad_batches by the task (Lightning does not accumulate for manual
        # optimization); limit_val_batches and limit_test_batches by the evaluation loaders, so
        # that a share keeps at least one batch (Lightning refuses a share of 1 batch)
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        num_sanity_val_steps=t.num_sanity_val_steps,
        deterministic=t.deterministic,
        benchmark=t.benchmark,
        detect_anomaly=t.detect_anomaly,
        profiler=_profiler(t.profiler, run_dir),
        logger=loggers
        if loggers is not None
        else trackers.build(cfg, run_dir, overrides, resume)[0],
        plugins=[AtomicCheckpointIO(t.checkpoint_interval_s, hold_dir=run_dir / "checkpoints")],
        callbacks=callbacks,
        enable_progress_bar=t.progress_bar,
        enable_model_summary=model_summary,
        log_every_n_steps=1_000_000,  # the task logs its own rows (trainer.log_every_n_steps)
        default_root_dir=run_dir,
    )


class ValidationPeriod(Callback):
    """`trainer.val_check_interval` in the data module's items (`validation_period`): set once
    the ranks are known (fit's setup), before Lightning reads it."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        data = trainer.datamodule
        if stage == "fit" and hasattr(data, "validation_period"):
            period = data.validation_period(trainer.world_size)
            if period is not None:
                trainer.val_check_interval = period


def _profiler(name: str | None, run_dir: Path) -> Any:
    """Lightning's profiler of that name, writing <run dir>/profile/{fit,test}-profile.txt."""
    if name is None:
        return None
    from lightning.pytorch import profilers

    classes = {
        "simple": profilers.SimpleProfiler,
        "advanced": profilers.AdvancedProfiler,
        "pytorch": profilers.PyTorchProfiler,
    }
    return classes[name](dirpath=run_dir / "profile", filename="profile")
