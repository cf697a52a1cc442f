"""Optimizers and learning-rate schedules: one branch per option of their config groups."""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and kernels only; biases and norm parameters (1-d) are
    not decayed."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(cfg: DictConfig, groups: list[dict]) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0
        )
    if cfg.name in ("adam", "adamw"):
        cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
        return cls(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(
            groups, lr=cfg.lr, alpha=cfg.alpha, momentum=cfg.momentum, eps=cfg.eps
        )
    raise ValueError(f"unknown optimizer {cfg.name!r}")


def build_scheduler(
    cfg: DictConfig, optimizer: torch.optim.Optimizer, max_epochs: int, total_steps: int
) -> dict | None:
    """A Lightning lr-scheduler config, or None for a constant learning rate."""
    if cfg.name == "none":
        return None
    if cfg.name == "step":
        sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
        return {"scheduler": sched, "interval": "epoch"}
    if cfg.name == "cosine":
        warmup = total_steps * cfg.warmup_epochs // max(max_epochs, 1)
        floor = cfg.min_lr_ratio

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"scheduler": sched, "interval": "step"}
    if cfg.name == "onecycle":
        peaks = [g["lr"] * cfg.max_lr_ratio for g in optimizer.param_groups]
        sched = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=peaks, total_steps=max(total_steps, 1), pct_start=cfg.pct_start
        )
        return {"scheduler": sched, "interval": "step"}
    if cfg.name == "plateau":
        mode = "min" if cfg.monitor.endswith("loss") else "max"
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=cfg.factor, patience=cfg.patience
        )
        return {"scheduler": sched, "interval": "epoch", "monitor": cfg.monitor}
    raise ValueError(f"unknown scheduler {cfg.name!r}")
