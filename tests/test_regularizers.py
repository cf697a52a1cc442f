"""Regularizers composed as a list are really applied during training."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf
from torch import nn

from dnnexp.data.datamodule import ArrayDataModule
from dnnexp.data.spec import DataSpec
from dnnexp.tasks.module import TrainingModule
from dnnexp.training.trainer import build_trainer
from tests.conftest import compose

ALL = "reg=[dropout,weight_decay,l1,label_smoothing,grad_clip,early_stopping]"


def test_list_composed_regs_reach_the_model_and_the_optimizer() -> None:
    cfg = compose(ALL, "reg.dropout=0.3", "reg.weight_decay=0.01")
    task = TrainingModule(OmegaConf.to_container(cfg), DataSpec([1, 8, 8], 10))
    assert {m.p for m in task.model.modules() if isinstance(m, nn.Dropout)} == {0.3}
    fake = {"estimated_stepping_batches": 10, "datamodule": None, "max_epochs": 3, "max_steps": -1}
    task.trainer = type("T", (), fake)()  # what Lightning provides
    optimizer = task.configure_optimizers()["optimizer"]
    decayed = [g for g in optimizer.param_groups if g["weight_decay"] == 0.01]
    plain = [g for g in optimizer.param_groups if g["weight_decay"] == 0.0]
    assert all(p.ndim > 1 for g in decayed for p in g["params"])
    assert all(p.ndim == 1 for g in plain for p in g["params"]) and plain[0]["params"]
    (l1,) = task._loss_terms  # the loss terms and the objective's loss carry the reg knobs
    assert l1.strength == cfg.reg.l1 > 0
    assert task.objective.label_smoothing == cfg.reg.label_smoothing > 0


class _GradNorms(L.Callback):
    """Grads are still there after the step: Lightning zeroes them at the next step."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        grads = [p.grad.norm() for p in pl_module.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack(grads))))


def _fit(tmp_path: Path, *overrides: str) -> tuple[L.Trainer, TrainingModule, _GradNorms]:
    cfg = compose(
        "data=synthetic",
        "trainer.progress_bar=false",
        "trainer.model_summary=false",
        "logger=none",
        *overrides,
    )
    data = ArrayDataModule(cfg.data, seed=0)
    data.setup()
    task = TrainingModule(OmegaConf.to_container(cfg), data.spec)
    tmp_path.mkdir(exist_ok=True)  # metrics.csv goes there (every run writes it)
    trainer = build_trainer(cfg, tmp_path, [])
    norms = _GradNorms()
    trainer.callbacks.append(norms)
    trainer.fit(task, datamodule=data)
    return trainer, task, norms


def test_gradient_clipping_bounds_the_grad_norm(tmp_path: Path) -> None:
    _, _, clipped = _fit(
        tmp_path / "a", "reg=grad_clip", "reg.grad_clip=0.05", "trainer.max_epochs=1"
    )
    _, _, free = _fit(tmp_path / "b", "trainer.max_epochs=1")
    assert max(clipped.norms) <= 0.05 * (1 + 1e-4)
    assert max(free.norms) > 0.05  # the bound was doing something


def test_early_stopping_stops_and_the_test_uses_the_best_checkpoint(tmp_path: Path) -> None:
    from dnnexp.training.run import train

    # min_delta larger than any improvement: nothing after epoch 0 counts as better
    cfg = compose(
        "data=synthetic",
        "reg=early_stopping",
        "reg.early_stopping.patience=2",
        "reg.early_stopping.min_delta=100",
        "trainer.max_epochs=20",
        "trainer.progress_bar=false",
        "logger=none",
    )
    summary = train(cfg, run_dir=tmp_path, overrides=[])
    assert summary["epochs"] == 3  # 1 + patience epochs, not 20
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["epoch"] == summary["best_epoch"]  # the test metrics come from the best epoch
    from dnnexp.evaluation.evaluate import evaluate

    evaluated = evaluate(tmp_path / "checkpoints" / "best.ckpt", tmp_path / "eval.json", [])
    assert evaluated["metrics"] == {k: summary["metrics"][k] for k in evaluated["metrics"]}


def test_label_smoothing_changes_training(tmp_path: Path) -> None:
    _, smooth, _ = _fit(
        tmp_path / "a", "reg=label_smoothing", "reg.label_smoothing=0.3", "trainer.max_epochs=1"
    )
    _, plain, _ = _fit(tmp_path / "b", "trainer.max_epochs=1")
    a, b = (torch.cat([p.flatten() for p in t.model.parameters()]) for t in (smooth, plain))
    assert not torch.allclose(a, b)
