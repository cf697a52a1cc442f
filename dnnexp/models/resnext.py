"""ResNeXt: residual bottleneck blocks whose 3x3 conv is split into `cardinality` groups."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dnnexp.models.layers import make_activation, make_norm, residual_network
from dnnexp.models.registry import register


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


@register("resnext")
def build(cfg: Any, input_shape: tuple[int, ...], num_outputs: int, dropout: float) -> nn.Module:
    """Stem -> stages of bottleneck blocks -> pool -> Dropout -> Linear
    (`layers.residual_network`). Inner width D = cardinality * width_per_group, or the stage
    width when that is null."""

    def block(in_channels: int, out_channels: int, stride: int) -> nn.Module:
        inner = out_channels
        if cfg.width_per_group is not None:
            inner = cfg.cardinality * cfg.width_per_group
        return BottleneckBlock(in_channels, inner, out_channels, stride, cfg)

    return residual_network(cfg, input_shape, num_outputs, dropout, block)
