"""One training run: config -> data -> model/task -> trainer -> fit -> test best -> run dir.

Called by `dnnexp train` with a validated config and the run dir Hydra created.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from rich.markup import escape

from dnnexp import console
from dnnexp.data.datamodule import ArrayDataModule
from dnnexp.quiet import silence_lightning_noise
from dnnexp.run_files import SUMMARY, versions, write_json
from dnnexp.task import ClassificationTask
from dnnexp.trainer import build_trainer, job_scope

CHECKPOINT = "checkpoints/best.ckpt"


def train(
    cfg: DictConfig,
    run_dir: Path,
    overrides: list[str],
    config_hash: str | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """Train, test the best checkpoint, write summary.json. `label` (a sweep job's name) makes
    the terminal output one line per run instead of the config tree and metrics table."""
    silence_lightning_noise()
    run_dir = Path(run_dir)
    is_main = rank_zero_only.rank == 0
    started = time.perf_counter()
    summary: dict[str, Any] = {
        "status": "running",
        "name": cfg.name,
        "seed": cfg.seed,
        "overrides": overrides,
        "config_hash": config_hash,
        "metrics": {},
    }
    if is_main:
        if label is None:
            console.print_config(cfg)
        write_json(run_dir / SUMMARY, summary)
    try:
        with job_scope():
            summary.update(_fit_and_test(cfg, run_dir, overrides, show_details=label is None))
        summary["status"] = "completed"
    except BaseException as err:  # the run dir must say what happened, then the error goes on
        summary["status"] = (
            "interrupted" if isinstance(err, (KeyboardInterrupt, SystemExit)) else "failed"
        )
        summary["error"] = f"{type(err).__name__}: {err}".splitlines()[0]
        raise
    finally:
        summary["duration_s"] = round(time.perf_counter() - started, 3)
        summary["versions"] = versions()
        if is_main:
            write_json(run_dir / SUMMARY, summary)
    if is_main and label is not None:
        console.console.print(
            f"{escape(label)}: test/acc {summary['metrics']['test/acc']:.4f}, best epoch"
            f" {summary['best_epoch']}, {summary['duration_s']:.1f} s -> {run_dir}"
        )
    elif is_main:
        console.print_metrics(
            f"{cfg.name}: the best checkpoint (epoch {summary['best_epoch']}) on the test split",
            summary["metrics"],
            {"run dir": str(run_dir), "time": f"{summary['duration_s']:.1f} s"},
        )
    return summary


def _fit_and_test(
    cfg: DictConfig, run_dir: Path, overrides: list[str], show_details: bool
) -> dict[str, Any]:
    L.seed_everything(cfg.seed, workers=False, verbose=False)
    data = ArrayDataModule(cfg.data, seed=cfg.seed)
    data.setup()
    task = ClassificationTask(
        OmegaConf.to_container(cfg, resolve=True),  # plain dict: loads with weights_only=True
        list(data.input_shape),
        data.num_classes,
        data.fingerprint,
    )
    trainer = build_trainer(cfg, run_dir, overrides, model_summary=show_details)
    trainer.fit(task, datamodule=data)
    if trainer.interrupted:
        raise KeyboardInterrupt("training interrupted")
    best_path = trainer.checkpoint_callback.best_model_path
    trainer.test(task, datamodule=data, ckpt_path=best_path or None, verbose=False)
    history = task.history
    best = _best_epoch(history, cfg.reg.early_stopping.monitor)
    at_best = history[best] if history else {}
    metrics = dict(task.test_metrics)
    for key in ("val/acc", "val/loss", "train/acc", "train/loss"):
        if key in at_best:
            metrics[key] = at_best[key]
    return {
        "metrics": metrics,
        "best_epoch": best,
        "epochs": len(history),
        "params": sum(p.numel() for p in task.model.parameters()),
        "checkpoint": CHECKPOINT if best_path else None,
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
    }


def _best_epoch(history: list[dict[str, float]], monitor: str) -> int:
    """The epoch ModelCheckpoint kept: the first one with the best monitored value."""
    if not history:
        return 0
    values = [row.get(monitor, float("nan")) for row in history]
    sign = 1 if monitor.endswith("loss") else -1
    return min(range(len(values)), key=lambda i: (sign * values[i], i))
