"""Train/val/test splits (stratified for classes, random for regression) and standardization,
on tensors (no sklearn import needed)."""

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


def random_split(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices of train/val/test drawn at random, with the sizes of `stratified_split`."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test, n_val = math.ceil(n * test_fraction), math.ceil(n * val_fraction)
    parts = (order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test])
    return tuple(torch.sort(p).values for p in parts)  # type: ignore[return-value]


def fold_split(
    pool: torch.Tensor, y: torch.Tensor | None, folds: int, fold: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-fold cross-validation: the indices `pool` (training + validation, the test split held
    out) cut into `folds` folds, stratified by their labels `y` (random when y is None);
    (training = the other folds, validation = fold `fold`). The folds of one seed are disjoint
    and cover the pool."""
    which = random_folds(len(pool), folds, seed) if y is None else stratified_folds(y, folds, seed)
    return pool[which != fold], pool[which == fold]


def stratified_folds(y: torch.Tensor, folds: int, seed: int) -> torch.Tensor:
    """The fold (0 .. folds-1) of each sample: every class shuffled, the classes one after the
    other dealt round-robin over the folds, so a class's count differs by at most one between
    folds and so do the folds' sizes. Refuses a class with fewer samples than folds."""
    g = torch.Generator().manual_seed(seed)
    classes, counts = torch.unique(y, return_counts=True)
    if int(counts.min()) < folds:
        smallest = int(counts.argmin())
        raise ConfigError(
            f"data.folds={folds} is more than the {int(counts[smallest])} training + validation"
            f" samples of class {int(classes[smallest])}: a stratified fold needs one of each;"
            f" use data.folds={int(counts[smallest])} at most, or data.stratify=false"
        )
    order = []
    for cls in classes:
        idx = torch.nonzero(y == cls).flatten()
        order.append(idx[torch.randperm(len(idx), generator=g)])
    return _deal(torch.cat(order), folds)


def random_folds(n: int, folds: int, seed: int) -> torch.Tensor:
    """The fold (0 .. folds-1) of each of n samples, drawn at random (sizes differ by <= 1)."""
    if n < folds:
        raise ConfigError(
            f"data.folds={folds} is more than the {n} training + validation samples:"
            f" use data.folds={n} at most"
        )
    return _deal(torch.randperm(n, generator=torch.Generator().manual_seed(seed)), folds)


def _deal(order: torch.Tensor, folds: int) -> torch.Tensor:
    """Fold j % folds for the j-th sample of `order`."""
    which = torch.empty(len(order), dtype=torch.long)
    which[order] = torch.arange(len(order)) % folds
    return which


def random_subsample(n: int, fraction: float, seed: int) -> torch.Tensor:
    """Indices of a random `fraction` of n samples (at least one)."""
    if fraction >= 1.0:
        return torch.arange(n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    return torch.sort(order[: max(1, round(n * fraction))]).values


def standardize(
    train: torch.Tensor,
    *others: torch.Tensor,
    per_column: bool = False,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Scale all splits with the training split's mean and std: one scalar each for images,
    one per column (dim 1) for tabular features and regression targets. `stats`: that mean
    and std when the caller has them already."""
    mean, std = stats if stats is not None else statistics(train, per_column)
    return [(t - mean) / std for t in (train, *others)]


def statistics(train: torch.Tensor, per_column: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The training split's mean and std (std at least 1e-8: a constant column stays 0)."""
    if per_column:
        return train.mean(0), train.std(0).clamp_min(1e-8)
    return train.mean(), train.std().clamp_min(1e-8)


def channel_statistics(images: torch.Tensor, chunk: int = 1024) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (N, C, H, W) uint8 images, in float64 chunks (a float copy
    of the whole split would be 4-8x its size). The sums are of integers, so exact in any order."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].double()
        total += part.sum((0, 2, 3))
        squares += (part * part).sum((0, 2, 3))
    count = images.numel() / channels
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt().clamp_min(1e-8)
    return mean.tolist(), std.tolist()
