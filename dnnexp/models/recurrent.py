"""Recurrent classifiers (RNN, LSTM, GRU) reading an image row by row, or token ids through an
embedding (data=text). Token sequences are packed (`pack_padded_sequence`): padding never
reaches the recurrence, so a text gives the same output whatever the batch pads it to.
torch.export does not trace packed sequences, so an export reads the same weights step by step
instead (`_read_tokens_unrolled`: each text's state held once its tokens end), which gives the
packed states to float precision (tested).

A text is read as its last layer's final states (`model.pooling=last`: the forward direction's
after its last token, the backward one's after its first) or as the max or the mean of that
layer's outputs over its tokens (`max`, `mean`; its padding never counted)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dnnexp.models.layers import init_weights, make_norm, pool_over_length, trim_padding
from dnnexp.models.registry import register

_CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
_WEIGHTS = ("weight_ih", "bias_ih", "weight_hh", "bias_hh")  # nn.RNNBase's, per layer/direction


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
        self.pooling = getattr(cfg, "pooling", "last")
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
        if torch.compiler.is_exporting():
            return self._read_tokens_unrolled(ids)
        ids, lengths = trim_padding(ids)
        steps = self.embed(ids)
        packed = nn.utils.rnn.pack_padded_sequence(
            steps, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, state = self.rnn(packed)
        if self.pooling != "last":
            outputs, _ = nn.utils.rnn.pad_packed_sequence(
                out, batch_first=True, total_length=ids.shape[1]
            )
            return pool_over_length(outputs, lengths, self.pooling)
        final = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
        if self.bidirectional:
            return torch.cat([final[-2], final[-1]], dim=1)
        return final[-1]

    def _read_tokens_unrolled(self, ids: torch.Tensor) -> torch.Tensor:
        """`_read_tokens` in plain tensor ops over the padded ids, layer by layer and direction
        by direction with the module's own weights. A step past a text's end keeps its state,
        so the forward direction ends on the last token and the backward one starts there."""
        ids, lengths = trim_padding(ids)
        steps = self.embed(ids)
        directions = ("", "_reverse") if self.bidirectional else ("",)
        finals: list[torch.Tensor] = []
        for layer in range(self.rnn.num_layers):
            if layer:  # what nn.RNNBase applies between layers (a no-op in eval mode)
                steps = nn.functional.dropout(steps, self.rnn.dropout, self.training)
            outputs, finals = [], []
            for suffix in directions:
                out, final = self._direction(steps, lengths, f"l{layer}{suffix}", bool(suffix))
                outputs.append(out)
                finals.append(final)
            steps = torch.cat(outputs, dim=2)
        if self.pooling != "last":
            return pool_over_length(steps, lengths, self.pooling)
        return torch.cat(finals, dim=1)

    def _direction(
        self, steps: torch.Tensor, lengths: torch.Tensor, name: str, backward: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One direction of one layer: its outputs (N, T, H) and each text's final state."""
        weight = {kind: getattr(self.rnn, f"{kind}_{name}") for kind in _WEIGHTS}
        inputs = steps @ weight["weight_ih"].T + weight["bias_ih"]  # every step's at once
        h = c = steps.new_zeros(steps.shape[0], self.hidden_size)
        length = steps.shape[1]
        outputs: list[torch.Tensor] = [h] * length
        for t in range(length - 1, -1, -1) if backward else range(length):
            hidden = h @ weight["weight_hh"].T + weight["bias_hh"]
            new_h, new_c = self._cell(inputs[:, t], hidden, h, c)
            inside = (lengths > t)[:, None]
            h, c = torch.where(inside, new_h, h), torch.where(inside, new_c, c)
            outputs[t] = h
        return torch.stack(outputs, dim=1), h

    def _cell(
        self, x: torch.Tensor, hidden: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of nn.RNN / nn.GRU / nn.LSTM (torch's gate order) from the input's and the
        state's projections: the new h and (LSTM) c."""
        if self.rnn.mode == "GRU":
            x_r, x_z, x_n = x.chunk(3, dim=1)
            h_r, h_z, h_n = hidden.chunk(3, dim=1)
            reset, update = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            candidate = torch.tanh(x_n + reset * h_n)
            return (1 - update) * candidate + update * h, c
        if self.rnn.mode == "LSTM":
            i, f, g, o = (x + hidden).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        activation = torch.tanh if self.rnn.mode == "RNN_TANH" else torch.relu
        return activation(x + hidden), c


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
