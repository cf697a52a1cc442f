"""A recurrent encoder-decoder (task=seq2seq): source token ids -> a (bidirectional) GRU or LSTM
encoder, packed so that padding never reaches it -> a decoder of the same cell that emits target
tokens one at a time, reading the encoder's outputs through attention (`model.attention`):

- `none`: the encoder's final states start the decoder, which reads nothing else of the source.
- `bahdanau` (Bahdanau et al. 2015): additive scores v·tanh(W s_{t-1} + U m_j) from the state
  before the step; the context is an input of the step.
- `luong` (Luong et al. 2015, "general"): scores s_t·W m_j from the state after the step, with
  input feeding (the previous attentional output is an input of the step).

The decoder's interface is what `decoding.py` (greedy and beam search) drives: `encode(src)`,
`start(memory)` and `step(tokens, state, memory)`; a state is a dict of tensors with the batch
first, so a beam reorders it with one index_select per tensor. Teacher forcing (`forward(src,
target)`) feeds the reference's previous token, or with `teacher_forcing` < 1 the model's own
previous prediction for that share of the steps (scheduled sampling, Bengio et al. 2015)."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from dnnexp.models.layers import init_weights, trim_padding
from dnnexp.models.registry import register

BOS, EOS = 2, 3  # data/text.py's reserved ids: begin and end of a text (0 pads)
_CELLS = {"gru": (nn.GRU, nn.GRUCell), "lstm": (nn.LSTM, nn.LSTMCell)}


class Memory(NamedTuple):
    """The encoder's outputs (N, S, 2H or H), where the source has tokens (N, S), and the
    decoder's first hidden state per layer (N, L, H)."""

    outputs: torch.Tensor
    mask: torch.Tensor
    hidden: torch.Tensor


class Seq2SeqRNN(nn.Module):
    def __init__(self, cfg: Any, source_vocab: int, target_vocab: int, dropout: float) -> None:
        super().__init__()
        rnn, cell = _CELLS[cfg.cell]
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
        step_input = cfg.embed_dim + (0 if cfg.attention == "none" else cfg.hidden_size)
        self.cells = nn.ModuleList(
            cell(step_input if i == 0 else cfg.hidden_size, cfg.hidden_size)
            for i in range(cfg.num_layers)
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
            if self.attention == "luong":
                state["feed"] = memory.hidden.new_zeros(len(memory.hidden), self.hidden_size)
        return state

    def step(
        self, tokens: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One decoder step: the previous tokens (N,) -> logits of the next (N, V), new state."""
        x = self.dropout(self.target_embed(tokens))
        context = None
        if self.attention == "bahdanau":  # attends from the state before the step
            context = self._context(state["h"][:, -1], state)
            x = torch.cat([x, context], dim=1)
        elif self.attention == "luong":
            x = torch.cat([x, state["feed"]], dim=1)
        hs, cs = [], []
        for i, cell in enumerate(self.cells):
            if self.cell_name == "lstm":
                h, c = cell(x, (state["h"][:, i], state["c"][:, i]))
                cs.append(c)
            else:
                h = cell(x, state["h"][:, i])
            hs.append(h)
            x = self.dropout(h) if i + 1 < self.layers else h
        new = dict(state, h=torch.stack(hs, dim=1))
        if cs:
            new["c"] = torch.stack(cs, dim=1)
        if self.attention == "none":
            return self.out(self.dropout(x)), new
        if context is None:  # luong: attends from the state after the step
            context = self._context(x, state)
        attended = torch.tanh(self.combine(torch.cat([x, context], dim=1)))
        if self.attention == "luong":
            new["feed"] = attended
        return self.out(self.dropout(attended)), new

    def _context(self, query: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """The attention-weighted values (N, H) of the source's tokens for `query` (N, H)."""
        keys = state["keys"]
        if self.attention == "bahdanau":
            scores = self.score(torch.tanh(keys + self.query(query)[:, None])).squeeze(2)
        else:
            scores = torch.bmm(keys, query[:, :, None]).squeeze(2)
        weights = scores.masked_fill(~state["mask"], float("-inf")).softmax(dim=1)
        return torch.bmm(weights[:, None], state["values"]).squeeze(1)

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
        logits = []
        for t in range(target.shape[1]):
            out, state = self.step(tokens, state)
            logits.append(out)
            tokens = target[:, t]
            if teacher_forcing < 1.0 and self.training:
                own = out.argmax(dim=1)
                fed = torch.rand(len(own), device=own.device) < teacher_forcing
                tokens = torch.where(fed, tokens, own)
        return torch.stack(logits, dim=1)


@register("seq2seq_rnn")
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
