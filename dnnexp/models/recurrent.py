"""Recurrent classifiers (RNN, LSTM, GRU) reading an image row by row, or token ids through an
embedding (data=text). Token sequences are packed (`pack_padded_sequence`): padding never
reaches the recurrence, so a text gives the same output whatever the batch pads it to."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dnnexp.models.layers import init_weights, make_norm, trim_padding
from dnnexp.models.registry import register

_CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentClassifier(nn.Module):
    """(N, C, H, W) -> H steps of C*W features -> recurrent stack -> norm -> Dropout -> Linear."""

    def __init__(
        self,
        cfg: Any,
        input_shape: tuple[int, ...],
        num_outputs: int,
        dropout: float,
        vocab_size: int | None = None,
    ) -> None:
        super().__init__()
        self.embed = None
        if vocab_size is not None:  # token ids; 0 pads (data/text.py: PAD)
            self.embed = nn.Embedding(vocab_size, cfg.embed_dim, padding_idx=0)
            step_size = cfg.embed_dim
        else:
            channels, _, width = input_shape
            step_size = channels * width
        options: dict[str, Any] = {}
        if cfg.name == "rnn":
            if cfg.activation not in ("tanh", "relu"):
                raise ValueError(f"rnn needs activation tanh or relu, got {cfg.activation!r}")
            options["nonlinearity"] = cfg.activation
        self.hidden_size = cfg.hidden_size
        self.bidirectional = cfg.bidirectional
        self.rnn = _CELLS[cfg.name](
            input_size=step_size,
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
        if self.embed is not None:
            return self.head(self._read_tokens(x))
        batch, channels, height, width = x.shape
        steps = x.permute(0, 2, 1, 3).reshape(batch, height, channels * width)
        out, _ = self.rnn(steps)
        features = out[:, -1, : self.hidden_size]
        if self.bidirectional:
            # The backward direction has read the whole sequence at the first step.
            features = torch.cat([features, out[:, 0, self.hidden_size :]], dim=1)
        return self.head(features)

    def _read_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """The last layer's final states (both directions) of each text, its padding unread."""
        ids, lengths = trim_padding(ids)
        steps = self.embed(ids)
        packed = nn.utils.rnn.pack_padded_sequence(
            steps, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, state = self.rnn(packed)
        final = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
        if self.bidirectional:
            return torch.cat([final[-2], final[-1]], dim=1)
        return final[-1]


@register("rnn", "lstm", "gru")
def build(
    cfg: Any,
    input_shape: tuple[int, ...],
    num_outputs: int,
    dropout: float,
    vocab_size: int | None = None,
) -> nn.Module:
    """A recurrent classifier; cfg.name picks nn.RNN, nn.LSTM or nn.GRU."""
    if vocab_size is None and len(input_shape) != 3:
        raise ValueError(f"recurrent models expect (C, H, W) inputs, got {input_shape}")
    model = RecurrentClassifier(cfg, input_shape, num_outputs, dropout, vocab_size)
    init_weights(model, cfg.init, cfg.activation)
    return model
