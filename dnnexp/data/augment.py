"""Batch augmentation with tensor ops (runs on the batch's device, no per-sample Python).

Images (N, C, H, W): a random affine per sample (shift up to 1/8 of the size, rotation up to 15
degrees, both scaled by `strength`) in one grid_sample, plus Gaussian noise. Natural images
(CIFAR, photos): random crops of the image padded by 1/8 of its size (scaled by `strength`), the
CIFAR convention, and horizontal flips, which would turn digits into other symbols. Sequences
(recurrent models): Gaussian noise only, since shifting rows would change the sequence itself.
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


def random_crop(x: torch.Tensor, strength: float) -> torch.Tensor:
    """A random crop of each image zero-padded by 1/8 of its size (x strength) on every side,
    as large as the image: one gather, no per-sample Python."""
    n, channels, height, width = x.shape
    pad = round(min(height, width) * MAX_SHIFT * strength)
    if pad == 0:
        return x
    padded = F.pad(x, (pad, pad, pad, pad)).flatten(2)
    dy = torch.randint(0, 2 * pad + 1, (n, 1, 1, 1), device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1, 1, 1), device=x.device)
    rows = torch.arange(height, device=x.device).view(1, 1, height, 1) + dy
    columns = torch.arange(width, device=x.device).view(1, 1, 1, width) + dx
    index = (rows * (width + 2 * pad) + columns).expand(n, channels, height, width)
    return padded.gather(2, index.flatten(2)).view_as(x)


def random_flip(x: torch.Tensor) -> torch.Tensor:
    """Half of the images (N, C, H, W), at random, mirrored left to right."""
    flipped = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
    return torch.where(flipped, x.flip(3), x)
