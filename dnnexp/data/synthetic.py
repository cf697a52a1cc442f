"""Synthetic data generated on the fly (the fastest tests).

classification: Gaussian noise around one random prototype per class.
regression: y = x·W + 0.5 sin(x·V) + noise, for `num_targets` target columns.
"""

from __future__ import annotations

import torch

from dnnexp.data.arrays import Arrays


def make(cfg) -> Arrays:
    g = torch.Generator().manual_seed(int(cfg.split_seed))
    shape = tuple(int(s) for s in cfg.shape)
    prototypes = torch.randn((cfg.num_classes, *shape), generator=g)
    y = torch.arange(cfg.num_samples) % cfg.num_classes
    y = y[torch.randperm(cfg.num_samples, generator=g)]
    x = prototypes[y] + cfg.noise * torch.randn((cfg.num_samples, *shape), generator=g)
    return Arrays(x, y)


def make_regression(cfg) -> Arrays:
    g = torch.Generator().manual_seed(int(cfg.split_seed))
    shape = tuple(int(s) for s in cfg.shape)
    x = torch.randn((cfg.num_samples, *shape), generator=g)
    flat = x.reshape(cfg.num_samples, -1)
    features = flat.shape[1]
    w = torch.randn((features, cfg.num_targets), generator=g) / features**0.5
    v = torch.randn((features, cfg.num_targets), generator=g) / features**0.5
    y = flat @ w + 0.5 * torch.sin(3 * flat @ v)
    y = y + cfg.noise * torch.randn(y.shape, generator=g)
    return Arrays(x, y)
