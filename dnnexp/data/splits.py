"""Stratified splits and standardization on tensors (no sklearn import needed)."""

from __future__ import annotations

import math

import torch

from dnnexp.config.errors import ConfigError


def allocate(counts: torch.Tensor, total: int) -> torch.Tensor:
    """Split `total` over classes in proportion to `counts` (largest remainders get the rest)."""
    exact = counts.double() * total / counts.sum()
    share = exact.floor().long()
    rest = total - int(share.sum())
    share[torch.argsort(exact - share, descending=True, stable=True)[:rest]] += 1
    return torch.minimum(share, counts)


def stratified_split(
    y: torch.Tensor, val_fraction: float, test_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices of train/val/test, each class split in the same proportions; the test and val
    sizes are ceil(fraction * n), as in scikit-learn's train_test_split (digits: 360 test)."""
    g = torch.Generator().manual_seed(seed)
    classes, counts = torch.unique(y, return_counts=True)
    n_test = allocate(counts, math.ceil(len(y) * test_fraction))
    n_val = allocate(counts - n_test, math.ceil(len(y) * val_fraction))
    parts: tuple[list, list, list] = ([], [], [])
    for cls, t, v in zip(classes, n_test.tolist(), n_val.tolist(), strict=True):
        idx = torch.nonzero(y == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        parts[2].append(idx[:t])
        parts[1].append(idx[t : t + v])
        parts[0].append(idx[t + v :])
    return tuple(torch.sort(torch.cat(p)).values for p in parts)  # type: ignore[return-value]


def stratified_subsample(y: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Indices of a stratified `fraction` of y; refuses when a class would be left empty."""
    if fraction >= 1.0:
        return torch.arange(len(y))
    g = torch.Generator().manual_seed(seed + 1)
    keep = []
    for cls in torch.unique(y):
        idx = torch.nonzero(y == cls).flatten()
        n = round(len(idx) * fraction)
        if n == 0:
            smallest = min(int((y == c).sum()) for c in torch.unique(y))
            raise ConfigError(
                f"data.train_fraction={fraction:g} leaves class {int(cls)} with no training sample"
                f" (smallest class: {smallest} samples): use at least {0.5 / smallest:.3g}"
            )
        keep.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    return torch.sort(torch.cat(keep)).values


def standardize(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Scale all splits with the training split's mean and std (one scalar each)."""
    mean, std = train.mean(), train.std().clamp_min(1e-8)
    return [(t - mean) / std for t in (train, *others)]
