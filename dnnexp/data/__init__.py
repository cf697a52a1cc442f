"""Datasets as in-memory tensors: each option of `conf/data/` maps to one loader function here."""

from __future__ import annotations

from collections.abc import Callable

import torch

from dnnexp.data import digits, synthetic

# name -> function(cfg) returning (x: float32 (N, C, H, W), y: int64 (N,))
DATASETS: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    "digits": digits.load,
    "synthetic": synthetic.make,
}
