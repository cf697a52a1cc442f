"""What every dataset loader returns."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Arrays(NamedTuple):
    """A whole dataset in memory.

    x: float32, (N, C, H, W) images or (N, F) tabular features.
    y: int64 (N,) class indices, or float32 (N, T) regression targets.
    classes: the class names, index i naming class i (None: regression, or unnamed classes).
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str] | None = None
