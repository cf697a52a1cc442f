"""Multi-layer perceptron on the flattened input."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from dnnexp.models.layers import init_weights, make_activation, make_norm
from dnnexp.models.registry import register


@register("mlp")
def build(cfg: Any, input_shape: tuple[int, ...], num_outputs: int, dropout: float) -> nn.Module:
    """Flatten -> [Linear -> norm -> act -> Dropout] per hidden width -> Linear."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for hidden in cfg.hidden:
        layers += [
            nn.Linear(width, hidden),
            make_norm(cfg.norm, hidden, cfg.norm_groups, dims=1),
            make_activation(cfg.activation),
            nn.Dropout(dropout),
        ]
        width = hidden
    layers.append(nn.Linear(width, num_outputs))
    model = nn.Sequential(*layers)
    init_weights(model, cfg.init, cfg.activation)
    return model
