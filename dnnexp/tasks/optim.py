"""Optimizers and learning-rate schedules: one branch per option of their config groups."""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from torch import nn

from dnnexp.config.errors import RunError
from dnnexp.config.metrics import mode
from dnnexp.config.schema import FUSED_OPTIMIZERS


def param_groups(
    model: nn.Module,
    weight_decay: float,
    backbone: set[str] = frozenset(),
    backbone_lr: float | None = None,
) -> list[dict]:
    """Weight decay on weight matrices and kernels only; biases and norm parameters (1-d) are
    not decayed. The `backbone` parameters (by name: the layers `init_from` loaded) get their
    own groups at `backbone_lr` when it is given."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            pretrained = backbone_lr is not None and name in backbone
            groups.setdefault((pretrained, p.ndim > 1), []).append(p)
    out = []
    for pretrained, decayed in ((False, True), (False, False), (True, True), (True, False)):
        params = groups.get((pretrained, decayed))
        if params is None and pretrained:
            continue
        group = {"params": params or [], "weight_decay": weight_decay if decayed else 0.0}
        if pretrained:
            group["lr"] = backbone_lr
        out.append(group)
    return out


def build_optimizer(cfg: DictConfig, groups: list[dict]) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        nesterov = cfg.nesterov and cfg.momentum > 0
        cls, kwargs = torch.optim.SGD, {"momentum": cfg.momentum, "nesterov": nesterov}
    elif cfg.name in ("adam", "adamw"):
        cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
        kwargs = {"betas": tuple(cfg.betas), "eps": cfg.eps}
    elif cfg.name == "rmsprop":
        cls = torch.optim.RMSprop
        kwargs = {"alpha": cfg.alpha, "momentum": cfg.momentum, "eps": cfg.eps}
    else:
        raise ValueError(f"unknown optimizer {cfg.name!r}")
    implementation = cfg.get("implementation", "auto")
    if implementation == "auto" and cfg.name in FUSED_OPTIMIZERS:
        try:
            return cls(groups, lr=cfg.lr, fused=True, **kwargs)
        except RuntimeError:  # no fused kernel for these parameters' device or dtype
            implementation = "foreach"
    try:
        return cls(groups, lr=cfg.lr, **_kernels(implementation), **kwargs)
    except RuntimeError as err:  # e.g. fused asked for on a device torch has no kernel for
        first = str(err).strip().splitlines()[0]
        raise RunError(f"optimizer.implementation={implementation}: {first}; use auto") from None


def _kernels(implementation: str) -> dict[str, bool]:
    """torch's update kernels. On the CPU torch defaults to a Python loop over the parameters;
    a fused kernel updates them all in one call, several times faster for a small model.
    Results agree with the loop up to float rounding."""
    if implementation == "fused":
        return {"fused": True}
    return {"foreach": implementation in ("foreach", "auto")}


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
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode(cfg.monitor), factor=cfg.factor, patience=cfg.patience
        )
        return {"scheduler": sched, "interval": "epoch", "monitor": cfg.monitor}
    raise ValueError(f"unknown scheduler {cfg.name!r}")
