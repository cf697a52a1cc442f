"""Transformers for text (Vaswani et al. 2017): token embeddings + sinusoidal positions ->
pre-norm encoder layers with a padding mask, then either

- a classifier (`TextTransformer`): the mean of the text's positions (or its first) ->
  Dropout -> Linear; or
- under task=seq2seq, an encoder-decoder (`Seq2SeqTransformer`): decoder layers with a causal
  mask over the target read the encoder's outputs (the source's padding masked out).

Padded positions are masked out of attention and of the pooling, so a text gives the same
output whatever length its batch is padded to. The encoder-decoder offers what `decoding.py`
drives (`encode`, `start`, `step`): a step runs the decoder over the whole prefix decoded so
far (no key/value cache: outputs here are tens of tokens, and the prefix is the state a beam
reorders)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from dnnexp.models.decoding import BOS
from dnnexp.models.layers import init_weights, pool_over_length, trim_padding
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


def token_embedding(vocab_size: int, width: int) -> nn.Embedding:
    """Embeddings N(0, 1/width), so that scaled by sqrt(width) they have unit variance, the
    positions' scale (nn.Embedding's N(0, 1) would bury the positions under them); 0 pads."""
    embed = nn.Embedding(vocab_size, width, padding_idx=0)
    nn.init.normal_(embed.weight, std=width**-0.5)
    with torch.no_grad():
        embed.weight[0].zero_()
    return embed


def _layer_options(cfg: Any, dropout: float) -> dict[str, Any]:
    activation = "gelu" if cfg.activation == "gelu" else "relu"
    return dict(
        d_model=cfg.embed_dim,
        nhead=cfg.heads,
        dim_feedforward=cfg.ff_dim,
        dropout=dropout,
        activation=activation,
        batch_first=True,
        norm_first=True,
    )


class _TokenEncoder(nn.Module):
    """The encoder both forms share: `_encode(ids)` -> (outputs (N, S, D) after a final
    LayerNorm, padding mask (N, S): True where padding), the ids trimmed to the batch's
    longest text first."""

    def __init__(self, cfg: Any, dropout: float, vocab_size: int) -> None:
        super().__init__()
        if cfg.embed_dim % cfg.heads:
            raise ValueError(f"model.embed_dim={cfg.embed_dim} must be a multiple of model.heads")
        self.width = cfg.embed_dim
        self.embed = token_embedding(vocab_size, cfg.embed_dim)
        layer = nn.TransformerEncoderLayer(**_layer_options(cfg, dropout))
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.embed_dim)

    def _encode(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids, lengths = trim_padding(ids)
        pad = torch.arange(ids.shape[1], device=ids.device)[None, :] >= lengths[:, None]
        steps = self.embed(ids) * math.sqrt(self.width)
        steps = steps + positions(ids.shape[1], self.width, ids.device)
        return self.norm(self.encoder(steps, src_key_padding_mask=pad)), pad


class TextTransformer(_TokenEncoder):
    def __init__(self, cfg: Any, num_outputs: int, dropout: float, vocab_size: int) -> None:
        super().__init__(cfg, dropout, vocab_size)
        self.pooling = cfg.pooling
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(cfg.embed_dim, num_outputs))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, pad = self._encode(ids)
        if self.pooling == "first":
            return self.head(out[:, 0])
        return self.head(pool_over_length(out, (~pad).sum(1), "mean"))


class Seq2SeqTransformer(_TokenEncoder):
    """Source ids -> encoder -> memory; target prefix ids -> decoder (causal) -> next-token
    logits. `model.tie_embeddings`: the output layer is the target embedding's transpose
    (Press & Wolf 2017)."""

    def __init__(self, cfg: Any, source_vocab: int, target_vocab: int, dropout: float) -> None:
        super().__init__(cfg, dropout, source_vocab)
        self.target_embed = token_embedding(target_vocab, cfg.embed_dim)
        layer = nn.TransformerDecoderLayer(**_layer_options(cfg, dropout))
        self.decoder = nn.TransformerDecoder(layer, cfg.layers)
        self.decoder_norm = nn.LayerNorm(cfg.embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(cfg.embed_dim, target_vocab)
        if cfg.tie_embeddings:
            self.out.weight = self.target_embed.weight

    def encode(self, src: torch.Tensor) -> dict[str, torch.Tensor]:
        memory, pad = self._encode(src)
        return {"memory": memory, "pad": pad}

    def start(self, memory: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The decoder's state before its first token: the memory and an empty prefix."""
        prefix = memory["pad"].new_zeros(len(memory["pad"]), 0, dtype=torch.long)
        return dict(memory, prefix=prefix)

    def _decode(self, fed: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits (N, T, V) of the token after each of `fed` (N, T), each position reading
        the ones before it and the source."""
        length = fed.shape[1]
        steps = self.target_embed(fed) * math.sqrt(self.width)
        steps = steps + positions(length, self.width, fed.device)
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=fed.device)
        out = self.decoder(
            steps,
            state["memory"],
            tgt_mask=causal,
            tgt_is_causal=True,
            memory_key_padding_mask=state["pad"],
        )
        return self.out(self.dropout(self.decoder_norm(out)))

    def step(
        self, tokens: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The previous tokens (N,) -> logits of the next (N, V), the prefix grown by them."""
        prefix = torch.cat([state["prefix"], tokens[:, None]], dim=1)
        logits = self._decode(prefix, dict(state, prefix=prefix))[:, -1]
        return logits, dict(state, prefix=prefix)

    def forward(
        self, src: torch.Tensor, target: torch.Tensor, teacher_forcing: float = 1.0
    ) -> torch.Tensor:
        """Logits (N, T, V) of each target token under teacher forcing, in one call (the
        validation refuses teacher_forcing < 1 for this family)."""
        target, _ = trim_padding(target)
        fed = torch.cat([torch.full_like(target[:, :1], BOS), target[:, :-1]], dim=1)
        return self._decode(fed, self.encode(src))


@register("transformer", decoder=True)
def build_decoder(
    cfg: Any,
    input_shape: tuple[int, ...],
    num_outputs: int,
    dropout: float,
    vocab_size: int,
) -> nn.Module:
    """task=seq2seq: source ids below `vocab_size` -> logits over `num_outputs` target ids."""
    return Seq2SeqTransformer(cfg, vocab_size, num_outputs, dropout)


@register("transformer")
def build(
    cfg: Any,
    input_shape: tuple[int, ...],
    num_outputs: int,
    dropout: float,
    vocab_size: int,
) -> nn.Module:
    """For token ids below `vocab_size` only (`build_model` refuses any other input)."""
    model = TextTransformer(cfg, num_outputs, dropout, vocab_size)
    init_weights(model.head, cfg.init, cfg.activation)
    return model
