"""Regularizers that act on the batch or on the loss, as plug-in lists of the training loop.

A batch transform maps a training batch `(x, y)` to another (augmentation; adversarial
examples next). A loss term is called with the (transformed) batch and the model's output after
the task's loss, and its value is added to it (L1; a distillation term next). Regularizers
that act elsewhere live there: dropout in the models, weight decay in the optimizer, clipping
and early stopping in the trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

from dnnexp.data.augment import add_noise, augment_images, random_crop, random_flip

BatchTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
LossTerm = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # x, y, output


class Augment:
    """`reg.augment`: shifts, rotations and noise for images; random crops for natural images
    (photos); noise for sequences of rows (the recurrent models) and tabular features; and
    horizontal flips where `flip` says so."""

    def __init__(self, strength: float, images: bool, natural: bool = False, flip: bool = False):
        strength = float(strength)
        if images and natural:
            self.ops = [partial(random_crop, strength=strength)]
        else:
            self.ops = [partial(augment_images if images else add_noise, strength=strength)]
        if images and flip:
            self.ops.append(random_flip)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for op in self.ops:
            x = op(x)
        return x, y


class L1Penalty:
    """`reg.l1`: lambda times the sum of |w| over the weight matrices and kernels."""

    def __init__(self, model: nn.Module, strength: float) -> None:
        self.params = [p for p in model.parameters() if p.ndim > 1]
        self.strength = float(strength)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return self.strength * sum(p.abs().sum() for p in self.params)


def batch_transforms(
    reg: Any, input_shape: tuple[int, ...], reads_rows: bool, natural_images: bool = False
) -> list:
    """`natural_images`: the data are photos (crops and flips suit them, rotations less)."""
    transforms: list[BatchTransform] = []
    augment = reg.augment
    if augment.enabled and augment.strength > 0:
        images = len(input_shape) == 3 and not reads_rows
        flip = natural_images if augment.get("flip") is None else bool(augment.flip)
        transforms.append(Augment(augment.strength, images, natural_images, flip))
    return transforms


def loss_terms(reg: Any, model: nn.Module) -> list:
    terms: list[LossTerm] = []
    if reg.l1 > 0:
        terms.append(L1Penalty(model, reg.l1))
    return terms
