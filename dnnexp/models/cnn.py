"""Plain convolutional network: conv blocks with max pooling, then a small classifier head."""

from __future__ import annotations

from typing import Any

from torch import nn

from dnnexp.models.layers import init_weights, make_activation, make_norm
from dnnexp.models.registry import register


@register("cnn")
def build(cfg: Any, input_shape: tuple[int, ...], num_outputs: int, dropout: float) -> nn.Module:
    """[Conv -> norm -> act -> MaxPool2d(2)] per channel entry -> [fc -> act] -> Dropout -> Linear.

    Pooling stops once a spatial side would drop below 1, so small inputs keep working.
    """
    in_channels, height, width = input_shape
    layers: list[nn.Module] = []
    for channels in cfg.channels:
        layers += [
            nn.Conv2d(in_channels, channels, cfg.kernel_size, padding="same"),
            make_norm(cfg.norm, channels, cfg.norm_groups, dims=2),
            make_activation(cfg.activation),
        ]
        if min(height, width) >= 2:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        in_channels = channels
    layers.append(nn.Flatten())
    features = in_channels * height * width
    if cfg.fc_hidden:
        layers += [nn.Linear(features, cfg.fc_hidden), make_activation(cfg.activation)]
        features = cfg.fc_hidden
    layers += [nn.Dropout(dropout), nn.Linear(features, num_outputs)]
    model = nn.Sequential(*layers)
    init_weights(model, cfg.init, cfg.activation)
    return model
