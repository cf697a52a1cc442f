"""A convolutional text classifier (Kim 2014): token embeddings -> 1-D convolutions of several
widths -> max over time (or the mean: `model.pooling=mean`, which counts n-grams as a bag of
n-grams does) -> norm -> Dropout -> Linear. The convolutions pad each text with the padding
embedding (zeros), and windows that see padding only are left out of the pooling, so a text
gives the same output whatever length its batch is padded to."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dnnexp.models.layers import (
    init_weights,
    make_activation,
    make_norm,
    pool_over_length,
    trim_padding,
)
from dnnexp.models.registry import register


class TextCNN(nn.Module):
    def __init__(self, cfg: Any, num_outputs: int, dropout: float, vocab_size: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim, padding_idx=0)
        self.widths, self.pooling = list(cfg.widths), getattr(cfg, "pooling", "max")
        self.convs = nn.ModuleList(
            nn.Conv1d(cfg.embed_dim, cfg.channels, width, padding=width - 1)
            for width in self.widths
        )
        self.activation = make_activation(cfg.activation)
        features = cfg.channels * len(self.widths)
        self.head = nn.Sequential(
            make_norm(cfg.norm, features, cfg.norm_groups, dims=1),
            nn.Dropout(dropout),
            nn.Linear(features, num_outputs),
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids, lengths = trim_padding(ids)
        steps = self.embed(ids).transpose(1, 2)  # (N, E, T)
        pooled = []
        for width, conv in zip(self.widths, self.convs, strict=True):
            out = self.activation(conv(steps))  # (N, C, T + width - 1): windows over the text
            windows = lengths + width - 1  # those with a token of the text
            pooled.append(pool_over_length(out, windows, self.pooling, dim=2))
        return self.head(torch.cat(pooled, dim=1))


@register("textcnn")
def build(
    cfg: Any,
    input_shape: tuple[int, ...],
    num_outputs: int,
    dropout: float,
    vocab_size: int,
) -> nn.Module:
    """For token ids below `vocab_size` only (`build_model` refuses any other input)."""
    model = TextCNN(cfg, num_outputs, dropout, vocab_size)
    init_weights(model, cfg.init, cfg.activation)
    return model
