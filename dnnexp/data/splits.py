"""Stratified splits and standardization on tensors (no sklearn import needed)."""

from __future__ import annotations

import torch

from dnnexp.config.errors import ConfigError


def stratified_split(
    y: torch.Tensor, val_fraction: float, test_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices of train/val/test with each class split in the same proportions."""
    g = torch.Generator().manual_seed(seed)
    parts: tuple[list, list, list] = ([], [], [])
    for cls in torch.unique(y):
        idx = torch.nonzero(y == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_test = round(len(idx) * test_fraction)
        n_val = round(len(idx) * val_fraction)
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test : n_test + n_val])
        parts[0].append(idx[n_test + n_val :])
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
