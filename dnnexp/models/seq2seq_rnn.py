"""A recurrent encoder-decoder (task=seq2seq): source token ids -> a (bidirectional) GRU or LSTM
encoder, packed so that padding never reaches it -> a decoder of the same cell that emits target
tokens one at a time, reading the encoder's outputs through attention (`model.attention`):

- `none`: the encoder's final states start the decoder, which reads nothing else of the source.
- `bahdanau` (Bahdanau et al. 2015): additive scores v·tanh(W s_{t-1} + U m_j) from the state
  before the step; the context is an input of the step.
- `luong` (Luong et al. 2015, "general" scores s_t·W m_j from the state after the step, without
  input feeding): the decoder's recurrence reads the target tokens alone, so teacher forcing
  runs it over the whole target in one call and attends from every step in one batched product
  (the others step one token at a time); several times faster on a CPU.

The decoder's interface is what `decoding.py` (greedy and beam search) drives: `encode(src)`,
`start(memory)` and `step(tokens, state, memory)`; a state is a dict of tensors with the batch
first, so a beam reorders it with one index_select per tensor. Teacher forcing (`forward(src,
target)`) feeds the reference's previous token, or with `teacher_forcing` < 1 the model's own
previous prediction for that share of the steps (scheduled sampling, Bengio et al. 2015)."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from dnnexp.models.decoding import BOS
from dnnexp.models.layers import init_weights, trim_padding
from dnnexp.models.registry import register

_CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class Memory(NamedTuple):
    """The encoder's outputs (N, S, 2H or H), where the source has tokens (N, S), and the
    decoder's first hidden state per layer (N, L, H)."""

    outputs: torch.Tensor
    mask: torch.Tensor
    hidden: torch.Tensor


class Seq2SeqRNN(nn.Module):
    def __init__(self, cfg: Any, source_vocab: int, target_vocab: int, dropout: float) -> None:
        super().__init__()
        rnn = _CELLS[cfg.cell]
        self.cell_name, self.attention = cfg.cell, cfg.attention
        self.layers, self.hidden_size = cfg.num_layers, cfg.hidden_size
        self.source_embed = nn.Embedding(source_vocab, cfg.embed_dim, padding_idx=0)
        self.target_embed = nn.Embedding(target_vocab, cfg.embed_dim, padding_idx=0)
        self.encoder = rnn(
            cfg.embed_dim,
            cfg.hidden_size,
            cfg.num_layers,
            batch_first=True,
            dropout=dropout if cfg.num_layers > 1 else 0.0,
            bidirectional=cfg.bidirectional,
        )
        width = cfg.hidden_size * (2 if cfg.bidirectional else 1)  # an encoder output
        self.bridge = nn.Linear(width, cfg.hidden_size * cfg.num_layers)  # -> decoder's start
        step_input = cfg.embed_dim + (cfg.hidden_size if cfg.attention == "bahdanau" else 0)
        self.decoder = rnn(
            step_input,
            cfg.hidden_size,
            cfg.num_layers,
            batch_first=True,
            dropout=dropout if cfg.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        if cfg.attention != "none":
            self.keys = nn.Linear(width, cfg.hidden_size, bias=False)  # U m_j, or W m_j
            if cfg.attention == "bahdanau":
                self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
                self.score = nn.Linear(cfg.hidden_size, 1, bias=False)
            self.values = nn.Linear(width, cfg.hidden_size, bias=False)
            self.combine = nn.Linear(2 * cfg.hidden_size, cfg.hidden_size)
        self.out = nn.Linear(cfg.hidden_size, target_vocab)

    # ---------------------------------------------------------------------------- encoder
    def encode(self, src: torch.Tensor) -> Memory:
        """Packed: a source gives the same memory whatever its batch pads it to."""
        src, lengths = trim_padding(src)
        packed = nn.utils.rnn.pack_padded_sequence(
            self.source_embed(src), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, state = self.encoder(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(
            out, batch_first=True, total_length=src.shape[1]
        )
        final = state[0] if isinstance(state, tuple) else state  # (layers * dirs, N, H)
        last = final[-2:] if self.encoder.bidirectional else final[-1:]
        summary = torch.cat(list(last), dim=1)  # the last layer's final state, both directions
        hidden = torch.tanh(self.bridge(summary)).view(len(src), self.layers, self.hidden_size)
        return Memory(outputs, src != 0, hidden)

    # ---------------------------------------------------------------------------- decoder
    def start(self, memory: Memory) -> dict[str, torch.Tensor]:
        """The decoder's state before its first token."""
        state = {"h": memory.hidden}
        if self.cell_name == "lstm":
            state["c"] = torch.zeros_like(memory.hidden)
        if self.attention != "none":
            state["keys"] = self.keys(memory.outputs)  # once per source, not per step
            state["values"] = self.values(memory.outputs)
            state["mask"] = memory.mask
        return state

    def step(
        self, tokens: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One decoder step: the previous tokens (N,) -> logits of the next (N, V), new state."""
        x = self.dropout(self.target_embed(tokens))
        context = None
        if self.attention == "bahdanau":  # attends from the state before the step
            context = self._context(state["h"][:, -1:], state)[:, 0]
            x = torch.cat([x, context], dim=1)
        out, new = self._recur(x[:, None], state)
        return self._emit(out, state, context)[:, 0], new

    def _recur(
        self, x: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The decoder's recurrence over steps x (N, T, E): its outputs (N, T, H), new state."""
        h = state["h"].transpose(0, 1).contiguous()  # (layers, N, H), as nn.GRU keeps it
        if self.cell_name == "lstm":
            out, (h, c) = self.decoder(x, (h, state["c"].transpose(0, 1).contiguous()))
            return out, dict(state, h=h.transpose(0, 1), c=c.transpose(0, 1))
        out, h = self.decoder(x, h)
        return out, dict(state, h=h.transpose(0, 1))

    def _emit(
        self, out: torch.Tensor, state: dict[str, torch.Tensor], context: torch.Tensor | None
    ) -> torch.Tensor:
        """Logits (N, T, V) from the decoder's outputs (N, T, H) and the attention."""
        if self.attention == "none":
            return self.out(self.dropout(out))
        if context is None:  # luong: attends from the outputs after the step, every step at once
            context = self._context(out, state)
        else:
            context = context[:, None]
        attended = torch.tanh(self.combine(torch.cat([out, context], dim=2)))
        return self.out(self.dropout(attended))

    def _context(self, query: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """The attention-weighted values (N, T, H) of the source's tokens for each of the
        queries (N, T, H)."""
        keys = state["keys"]  # (N, S, H)
        if self.attention == "bahdanau":
            mixed = torch.tanh(keys[:, None] + self.query(query)[:, :, None])  # (N, T, S, H)
            scores = self.score(mixed).squeeze(3)
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))  # (N, T, S)
        weights = scores.masked_fill(~state["mask"][:, None], float("-inf")).softmax(dim=2)
        return torch.bmm(weights, state["values"])

    # ---------------------------------------------------------------------- teacher forcing
    def forward(
        self, src: torch.Tensor, target: torch.Tensor, teacher_forcing: float = 1.0
    ) -> torch.Tensor:
        """Logits (N, T, V) of each target token (target: ids ending in EOS, padded with 0),
        each step fed the reference's previous token (BOS first), or with probability
        1 - teacher_forcing the model's own previous prediction."""
        target, _ = trim_padding(target)
        state = self.start(self.encode(src))
        tokens = torch.full_like(target[:, 0], BOS)
        sampled = teacher_forcing < 1.0 and self.training
        if self.attention != "bahdanau" and not sampled:  # the whole target in one call
            fed = torch.cat([tokens[:, None], target[:, :-1]], dim=1)
            out, _ = self._recur(self.dropout(self.target_embed(fed)), state)
            return self._emit(out, state, None)
        logits = []
        for t in range(target.shape[1]):
            out, state = self.step(tokens, state)
            logits.append(out)
            tokens = target[:, t]
            if sampled:
                own = out.argmax(dim=1)
                fed = torch.rand(len(own), device=own.device) < teacher_forcing
                tokens = torch.where(fed, tokens, own)
        return torch.stack(logits, dim=1)


@register("seq2seq_rnn", decoder=True)
def build(
    cfg: Any,
    input_shape: tuple[int, ...],
    num_outputs: int,
    dropout: float,
    vocab_size: int,
) -> nn.Module:
    """Source ids below `vocab_size` -> logits over `num_outputs` target tokens."""
    model = Seq2SeqRNN(cfg, vocab_size, num_outputs, dropout)
    init_weights(model.out, cfg.init, "tanh")
    return model
