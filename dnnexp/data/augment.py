"""Batch augmentation with tensor ops (runs on the batch's device, no per-sample Python).

Images (N, C, H, W): a random affine per sample (shift up to 1/8 of the size, rotation up to 15
degrees, both scaled by `strength`) in one grid_sample, plus Gaussian noise. Sequences (recurrent
models): Gaussian noise only, since shifting rows would change the sequence itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_SHIFT = 0.125  # of the image size
MAX_ROTATION = math.radians(15)
NOISE_STD = 0.1  # in standardized units


def augment_images(x: torch.Tensor, strength: float) -> torch.Tensor:
    n = x.shape[0]
    angle = (torch.rand(n, device=x.device) * 2 - 1) * MAX_ROTATION * strength
    shift = (
        (torch.rand(n, 2, device=x.device) * 2 - 1) * (2 * MAX_SHIFT) * strength
    )  # grid is [-1, 1]
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    moved = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    return add_noise(moved, strength)


def add_noise(x: torch.Tensor, strength: float) -> torch.Tensor:
    return x + torch.randn_like(x) * (NOISE_STD * strength)
