"""ResNet with basic residual blocks (two 3x3 convs per block)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dnnexp.models.layers import make_activation, make_norm, residual_network
from dnnexp.models.registry import register


class BasicBlock(nn.Module):
    """conv3x3 -> norm -> act -> conv3x3 -> norm, plus a shortcut, then act."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, cfg: Any) -> None:
        super().__init__()
        bias = cfg.norm == "none"  # a norm right after a conv makes its bias redundant
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias),
            make_norm(cfg.norm, out_channels, cfg.norm_groups, dims=2),
            make_activation(cfg.activation),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
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


@register("resnet")
def build(cfg: Any, input_shape: tuple[int, ...], num_outputs: int, dropout: float) -> nn.Module:
    """Stem -> stages of `blocks_per_stage` basic blocks -> pool -> Dropout -> Linear
    (`layers.residual_network`)."""

    def block(in_channels: int, out_channels: int, stride: int) -> nn.Module:
        return BasicBlock(in_channels, out_channels, stride, cfg)

    return residual_network(cfg, input_shape, num_outputs, dropout, block)
