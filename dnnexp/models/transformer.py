"""A Transformer encoder for text: token embeddings + sinusoidal positions -> encoder layers
with a padding mask -> the mean of the text's positions (or its first) -> Dropout -> Linear.
Padded positions are masked out of attention and of the pooling, so a text gives the same
output whatever length its batch is padded to."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from dnnexp.models.layers import init_weights, trim_padding
from dnnexp.models.registry import register


def positions(length: int, width: int, device: torch.device) -> torch.Tensor:
    """The sinusoidal position encodings of Vaswani et al. (2017), (length, width)."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    scale = torch.exp(
        torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width)
    )
    table = torch.zeros(length, width, device=device)
    table[:, 0::2] = torch.sin(position * scale)
    table[:, 1::2] = torch.cos(position * scale)[:, : width // 2]
    return table


class TextTransformer(nn.Module):
    def __init__(self, cfg: Any, num_outputs: int, dropout: float, vocab_size: int) -> None:
        super().__init__()
        self.width, self.pooling = cfg.embed_dim, cfg.pooling
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim, padding_idx=0)
        # N(0, 1/width), so that the embeddings scaled by sqrt(width) have unit variance, the
        # positions' scale: nn.Embedding's N(0, 1) would bury the positions under them
        nn.init.normal_(self.embed.weight, std=cfg.embed_dim**-0.5)
        with torch.no_grad():
            self.embed.weight[0].zero_()  # the padding row
        layer = nn.TransformerEncoderLayer(
            cfg.embed_dim,
            cfg.heads,
            cfg.ff_dim,
            dropout=dropout,
            activation="gelu" if cfg.activation == "gelu" else "relu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.embed_dim)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(cfg.embed_dim, num_outputs))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids, lengths = trim_padding(ids)
        pad = torch.arange(ids.shape[1], device=ids.device)[None, :] >= lengths[:, None]
        steps = self.embed(ids) * math.sqrt(self.width)
        steps = steps + positions(ids.shape[1], self.width, ids.device)
        out = self.norm(self.encoder(steps, src_key_padding_mask=pad))
        if self.pooling == "first":
            return self.head(out[:, 0])
        keep = (~pad).unsqueeze(2).to(out.dtype)
        return self.head((out * keep).sum(1) / keep.sum(1))


@register("transformer")
def build(
    cfg: Any,
    input_shape: tuple[int, ...],
    num_outputs: int,
    dropout: float,
    vocab_size: int,
) -> nn.Module:
    """For token ids below `vocab_size` only (`build_model` refuses any other input)."""
    if cfg.embed_dim % cfg.heads:
        raise ValueError(f"model.embed_dim={cfg.embed_dim} must be a multiple of model.heads")
    model = TextTransformer(cfg, num_outputs, dropout, vocab_size)
    init_weights(model.head, cfg.init, cfg.activation)
    return model
