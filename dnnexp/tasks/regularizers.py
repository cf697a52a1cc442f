"""Regularizers that act on the batch or on the loss, as plug-in lists of the training loop.

A batch transform maps a training batch `(x, y)` to another (augmentation, adversarial
examples). A loss term is called with the (transformed) batch and the model's output after
the task's loss, and its value is added to it (L1, distillation). Regularizers
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
from dnnexp.data.text import RESERVED, UNK
from dnnexp.tasks.attacks import Attack, InputRange, Loss
from dnnexp.tasks.distillation import Distillation

FIRST_TOKEN = len(RESERVED)  # the ids below are padding, <unk>, <bos>, <eos>
BatchTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
# x, y, output, then what the batch carries besides (a teacher's precomputed outputs)
LossTerm = Callable[..., torch.Tensor]


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


class TokenDropout:
    """`reg.token_dropout`: each token of a training text (not padding, not a reserved id)
    replaced by <unk> with probability `p`, a fresh draw per batch."""

    def __init__(self, p: float) -> None:
        self.p = float(p)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        drop = (x >= FIRST_TOKEN) & (torch.rand(x.shape, device=x.device) < self.p)
        return x.masked_fill(drop, UNK), y


class AdversarialExamples:
    """`reg.adversarial`: the first `ratio` of each (shuffled) training batch replaced by its
    FGSM or PGD version against the model as it is at that step."""

    def __init__(self, attack: Attack, model: nn.Module, loss: Loss, ratio: float) -> None:
        self.attack, self.model, self.loss, self.ratio = attack, model, loss, float(ratio)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = round(len(y) * self.ratio)
        if k == 0:
            return x, y
        adversarial = self.attack(self.model, self.loss, x[:k], y[:k])
        return (adversarial if k == len(y) else torch.cat([adversarial, x[k:]])), y


class L1Penalty:
    """`reg.l1`: lambda times the sum of |w| over the weight matrices and kernels."""

    def __init__(self, model: nn.Module, strength: float) -> None:
        self.params = [p for p in model.parameters() if p.ndim > 1]
        self.strength = float(strength)

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, output: torch.Tensor, *extra: torch.Tensor
    ) -> torch.Tensor:
        return self.strength * sum(p.abs().sum() for p in self.params)


def batch_transforms(
    reg: Any,
    input_shape: tuple[int, ...],
    reads_rows: bool,
    natural_images: bool = False,
    model: nn.Module | None = None,
    loss: Loss | None = None,
    input_range: dict | None = None,
) -> list:
    """`natural_images`: the data are photos (crops and flips suit them, rotations less).
    Adversarial examples (after augmentation) attack `model` on `loss` within `input_range`
    (the data module's: the valid range of the standardized inputs, and their raw unit).
    Token dropout applies to token ids (the validation refuses it for other inputs)."""
    transforms: list[BatchTransform] = []
    if reg.get("token_dropout", 0.0) > 0:
        transforms.append(TokenDropout(reg.token_dropout))
    augment = reg.augment
    if augment.enabled and augment.strength > 0:
        images = len(input_shape) == 3 and not reads_rows
        flip = natural_images if augment.get("flip") is None else bool(augment.flip)
        transforms.append(Augment(augment.strength, images, natural_images, flip))
    adversarial = reg.get("adversarial")
    if adversarial is not None and adversarial.enabled:
        attack = Attack(
            adversarial.method,
            adversarial.eps,
            InputRange(input_range),
            adversarial.steps,
            adversarial.alpha,
        )
        transforms.append(AdversarialExamples(attack, model, loss, adversarial.ratio))
    return transforms


def loss_terms(reg: Any, model: nn.Module, distill: Any = None, teacher: Any = None) -> list:
    """A term may carry `task_weight`, the factor of the task's own loss (distillation's
    1 - alpha); the others leave it at 1."""
    terms: list[LossTerm] = []
    if reg.l1 > 0:
        terms.append(L1Penalty(model, reg.l1))
    if teacher is not None:
        terms.append(Distillation(teacher, distill.temperature, distill.alpha))
    return terms
