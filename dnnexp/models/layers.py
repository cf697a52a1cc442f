"""Building blocks shared by the model families: activations, norms, weight init and the
residual network that resnet and resnext share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
# Nonlinearities whose gain torch's kaiming init knows; the others are initialised as relu.
_KAIMING_GAINS = ("relu", "leaky_relu", "tanh", "sigmoid")
_LEAKY_SLOPE = 0.01  # nn.LeakyReLU's default negative slope


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def make_norm(kind: str, num_features: int, groups: int, dims: int) -> nn.Module:
    """A norm over features of (N, F) inputs (dims=1) or channels of (N, C, H, W) (dims=2)."""
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2, got {dims}")
    if kind == "batch":
        return nn.BatchNorm1d(num_features) if dims == 1 else nn.BatchNorm2d(num_features)
    if kind == "group":
        return nn.GroupNorm(groups, num_features)
    if kind == "layer":
        return nn.LayerNorm(num_features) if dims == 1 else nn.GroupNorm(1, num_features)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of batch, group, layer, none")


def init_weights(module: nn.Module, scheme: str, activation: str) -> None:
    """Init every Linear/Conv weight of `module` by `scheme` and zero their biases.

    Norm layers keep their ones/zeros and recurrent cells keep torch's init; "default" changes
    nothing.
    """
    if scheme == "default":
        return
    if scheme not in ("kaiming", "xavier"):
        raise ValueError(f"unknown init {scheme!r}; choose one of kaiming, xavier, default")
    nonlinearity = activation if activation in _KAIMING_GAINS else "relu"
    for layer in module.modules():
        if not isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            continue
        if scheme == "kaiming":
            nn.init.kaiming_normal_(
                layer.weight, a=_LEAKY_SLOPE, mode="fan_in", nonlinearity=nonlinearity
            )
        else:
            nn.init.xavier_normal_(layer.weight)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


def residual_network(
    cfg: Any,
    input_shape: tuple[int, ...],
    num_outputs: int,
    dropout: float,
    block: Callable[[int, int, int], nn.Module],
) -> nn.Module:
    """What resnet and resnext share: a 3x3 conv stem at `cfg.channels[0]` -> stages of
    `cfg.blocks_per_stage` blocks `block(in_channels, out_channels, stride)` -> global average
    pool -> Dropout -> Linear. Every stage after the first halves the spatial size in its first
    block while it is >= 2."""
    in_channels, height, width = input_shape
    channels = cfg.channels[0]
    bias = cfg.norm == "none"  # a norm right after a conv makes its bias redundant
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, channels, 3, padding=1, bias=bias),
        make_norm(cfg.norm, channels, cfg.norm_groups, dims=2),
        make_activation(cfg.activation),
    ]
    for stage, out_channels in enumerate(cfg.channels):
        for index in range(cfg.blocks_per_stage):
            stride = 2 if stage > 0 and index == 0 and min(height, width) >= 2 else 1
            if stride == 2:
                height, width = (height + 1) // 2, (width + 1) // 2
            layers.append(block(channels, out_channels, stride))
            channels = out_channels
    layers += [
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(channels, num_outputs),
    ]
    model = nn.Sequential(*layers)
    init_weights(model, cfg.init, cfg.activation)
    return model


def trim_padding(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (N, T) padded with 0 -> the ids cut to the batch's longest text, and each
    text's length (at least 1). An exported graph keeps all T (its shapes are fixed)."""
    lengths = (ids != 0).sum(1).clamp_min(1)
    if not torch.compiler.is_exporting():
        ids = ids[:, : int(lengths.max())]
    return ids, lengths


def pool_over_length(
    x: torch.Tensor, lengths: torch.Tensor, how: str, dim: int = 1
) -> torch.Tensor:
    """The max or the mean of `x` over its positions along `dim`, each sample's first
    `lengths` positions only (the rest is padding, never counted). Batch first."""
    where = [1] * x.ndim
    where[dim] = -1
    inside = torch.arange(x.shape[dim], device=x.device).view(where)
    inside = inside < lengths.to(x.device).view([-1] + [1] * (x.ndim - 1))
    if how == "max":
        return x.masked_fill(~inside, float("-inf")).amax(dim=dim)
    count = lengths.to(x.device, x.dtype).view([-1] + [1] * (x.ndim - 2))
    return (x * inside).sum(dim=dim) / count
