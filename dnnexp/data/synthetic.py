"""Synthetic classification data: Gaussian noise around one random prototype image per class."""

from __future__ import annotations

import torch


def make(cfg) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(int(cfg.split_seed))
    shape = tuple(int(s) for s in cfg.shape)
    prototypes = torch.randn((cfg.num_classes, *shape), generator=g)
    y = torch.arange(cfg.num_samples) % cfg.num_classes
    y = y[torch.randperm(cfg.num_samples, generator=g)]
    x = prototypes[y] + cfg.noise * torch.randn((cfg.num_samples, *shape), generator=g)
    return x, y
