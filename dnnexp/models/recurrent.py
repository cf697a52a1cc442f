"""Recurrent classifiers (RNN, LSTM, GRU) reading an image row by row."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dnnexp.models.layers import init_weights, make_norm
from dnnexp.models.registry import register

_CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentClassifier(nn.Module):
    """(N, C, H, W) -> H steps of C*W features -> recurrent stack -> norm -> Dropout -> Linear."""

    def __init__(
        self, cfg: Any, input_shape: tuple[int, ...], num_outputs: int, dropout: float
    ) -> None:
        super().__init__()
        channels, _, width = input_shape
        options: dict[str, Any] = {}
        if cfg.name == "rnn":
            if cfg.activation not in ("tanh", "relu"):
                raise ValueError(f"rnn needs activation tanh or relu, got {cfg.activation!r}")
            options["nonlinearity"] = cfg.activation
        self.hidden_size = cfg.hidden_size
        self.bidirectional = cfg.bidirectional
        self.rnn = _CELLS[cfg.name](
            input_size=channels * width,
            hidden_size=cfg.hidden_size,
            num_layers=cfg.num_layers,
            batch_first=True,
            dropout=dropout if cfg.num_layers > 1 else 0.0,
            bidirectional=cfg.bidirectional,
            **options,
        )
        features = cfg.hidden_size * (2 if cfg.bidirectional else 1)
        self.head = nn.Sequential(
            make_norm(cfg.norm, features, cfg.norm_groups, dims=1),
            nn.Dropout(dropout),
            nn.Linear(features, num_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        steps = x.permute(0, 2, 1, 3).reshape(batch, height, channels * width)
        out, _ = self.rnn(steps)
        features = out[:, -1, : self.hidden_size]
        if self.bidirectional:
            # The backward direction has read the whole sequence at the first step.
            features = torch.cat([features, out[:, 0, self.hidden_size :]], dim=1)
        return self.head(features)


@register("rnn", "lstm", "gru")
def build(cfg: Any, input_shape: tuple[int, ...], num_outputs: int, dropout: float) -> nn.Module:
    """A recurrent classifier; cfg.name picks nn.RNN, nn.LSTM or nn.GRU."""
    if len(input_shape) != 3:
        raise ValueError(f"recurrent models expect (C, H, W) inputs, got {input_shape}")
    model = RecurrentClassifier(cfg, input_shape, num_outputs, dropout)
    init_weights(model, cfg.init, cfg.activation)
    return model
