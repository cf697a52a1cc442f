"""ResNeXt: residual bottleneck blocks whose 3x3 conv is split into `cardinality` groups."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dnnexp.models.layers import init_weights, make_activation, make_norm


class BottleneckBlock(nn.Module):
    """1x1 in->D -> grouped 3x3 D->D -> 1x1 D->out (norm/act between), plus a shortcut."""

    def __init__(
        self, in_channels: int, inner: int, out_channels: int, stride: int, cfg: Any
    ) -> None:
        super().__init__()
        bias = cfg.norm == "none"  # a norm right after a conv makes its bias redundant
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, inner, 1, bias=bias),
            make_norm(cfg.norm, inner, cfg.norm_groups, dims=2),
            make_activation(cfg.activation),
            nn.Conv2d(inner, inner, 3, stride=stride, padding=1, groups=cfg.cardinality, bias=bias),
            make_norm(cfg.norm, inner, cfg.norm_groups, dims=2),
            make_activation(cfg.activation),
            nn.Conv2d(inner, out_channels, 1, bias=bias),
            make_norm(cfg.norm, out_channels, cfg.norm_groups, dims=2),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=bias),
                make_norm(cfg.norm, out_channels, cfg.norm_groups, dims=2),
            )
        self.act = make_activation(cfg.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def build(cfg: Any, input_shape: tuple[int, ...], num_classes: int, dropout: float) -> nn.Module:
    """Stem -> stages of bottleneck blocks -> global average pool -> Dropout -> Linear.

    Inner width D = cardinality * width_per_group, or the stage width when that is null.
    Every stage after the first halves the spatial size in its first block while it is >= 2.
    """
    in_channels, height, width = input_shape
    channels = cfg.channels[0]
    bias = cfg.norm == "none"
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, channels, 3, padding=1, bias=bias),
        make_norm(cfg.norm, channels, cfg.norm_groups, dims=2),
        make_activation(cfg.activation),
    ]
    for stage, out_channels in enumerate(cfg.channels):
        inner = out_channels
        if cfg.width_per_group is not None:
            inner = cfg.cardinality * cfg.width_per_group
        for block in range(cfg.blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 and min(height, width) >= 2 else 1
            if stride == 2:
                height, width = (height + 1) // 2, (width + 1) // 2
            layers.append(BottleneckBlock(channels, inner, out_channels, stride, cfg))
            channels = out_channels
    layers += [
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(channels, num_classes),
    ]
    model = nn.Sequential(*layers)
    init_weights(model, cfg.init, cfg.activation)
    return model
