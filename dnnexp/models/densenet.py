"""DenseNet: dense blocks whose layers see every earlier feature map, joined by transitions."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from dnnexp.models.layers import init_weights, make_activation, make_norm
from dnnexp.models.registry import register


class DenseLayer(nn.Module):
    """norm -> act -> [1x1 conv to 4*growth -> norm -> act] -> 3x3 conv -> Dropout, concatenated."""

    def __init__(self, in_channels: int, cfg: Any, dropout: float) -> None:
        super().__init__()
        bias = cfg.norm == "none"  # a norm right after a conv makes its bias redundant
        layers: list[nn.Module] = [
            make_norm(cfg.norm, in_channels, cfg.norm_groups, dims=2),
            make_activation(cfg.activation),
        ]
        if cfg.bottleneck:
            inner = 4 * cfg.growth_rate
            layers += [
                nn.Conv2d(in_channels, inner, 1, bias=bias),
                make_norm(cfg.norm, inner, cfg.norm_groups, dims=2),
                make_activation(cfg.activation),
            ]
            in_channels = inner
        layers += [
            nn.Conv2d(in_channels, cfg.growth_rate, 3, padding=1, bias=bias),
            nn.Dropout(dropout),
        ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


@register("densenet")
def build(cfg: Any, input_shape: tuple[int, ...], num_outputs: int, dropout: float) -> nn.Module:
    """Stem -> dense blocks with transitions between -> norm -> act -> global pool -> Linear.

    A transition compresses the channels to floor(channels * compression) and average-pools
    while the spatial size is >= 2.
    """
    in_channels, height, width = input_shape
    bias = cfg.norm == "none"
    channels = cfg.init_channels
    layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1, bias=bias)]
    for block, num_layers in enumerate(cfg.block_layers):
        for _ in range(num_layers):
            layers.append(DenseLayer(channels, cfg, dropout))
            channels += cfg.growth_rate
        if block == len(cfg.block_layers) - 1:
            break
        out_channels = max(1, math.floor(channels * cfg.compression))
        layers += [
            make_norm(cfg.norm, channels, cfg.norm_groups, dims=2),
            make_activation(cfg.activation),
            nn.Conv2d(channels, out_channels, 1, bias=bias),
        ]
        if min(height, width) >= 2:
            layers.append(nn.AvgPool2d(2))
            height, width = height // 2, width // 2
        channels = out_channels
    layers += [
        make_norm(cfg.norm, channels, cfg.norm_groups, dims=2),
        make_activation(cfg.activation),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, num_outputs),
    ]
    model = nn.Sequential(*layers)
    init_weights(model, cfg.init, cfg.activation)
    return model
