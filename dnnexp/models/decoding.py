"""Greedy and beam-search decoding of an encoder-decoder (`encode`, `start`, `step`: see
`seq2seq_rnn.py`), batched over sources, on the model's device.

A hypothesis ends when it emits EOS, or at `max_length` tokens (then it ends there, as if EOS
followed). Its score is the sum of its tokens' log-probabilities (EOS included) divided by
its length (tokens + EOS) to the power `length_penalty` (0: the plain sum, which favours short
outputs; 1: the mean log-probability). Beam search keeps the `beam` best unfinished hypotheses
of each source at each step and returns the best finished one; with `beam=1` it is greedy
decoding (tested)."""

from __future__ import annotations

from typing import Any

import torch

# data/text.py's reserved ids (models and data are sibling layers: neither imports the other)
BOS, EOS, PAD = 2, 3, 0


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of the next token; padding and BOS are never emitted."""
    logits = logits.float().clone()
    logits[:, [PAD, BOS]] = float("-inf")
    return logits.log_softmax(dim=1)


def _reorder(state: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    return {key: value.index_select(0, index) for key, value in state.items()}


@torch.no_grad()
def greedy(model: Any, src: torch.Tensor, max_length: int) -> torch.Tensor:
    """The most likely token at each step: ids (N, L) without EOS, padded with 0."""
    state = model.start(model.encode(src))
    tokens = torch.full((len(src),), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(len(src), dtype=torch.bool, device=src.device)
    out = []
    for _ in range(max_length):
        logits, state = model.step(tokens, state)
        tokens = _log_probs(logits).argmax(dim=1)
        done = done | (tokens == EOS)
        out.append(tokens.masked_fill(done, PAD))
        if bool(done.all()):
            break
    return torch.stack(out, dim=1) if out else src.new_zeros(len(src), 0)


@torch.no_grad()
def beam_search(
    model: Any, src: torch.Tensor, beam: int, max_length: int, length_penalty: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best finished hypothesis of each source: ids (N, L) without EOS, padded with 0,
    and their scores (N,). Each step ranks the 2 x beam best continuations of a source's
    hypotheses: an EOS among its first `beam` finishes that hypothesis, the best `beam` others
    go on; a source is done when `beam` of its hypotheses have finished (fairseq's rule, which
    makes beam=1 greedy decoding)."""
    n, device = len(src), src.device
    rows = torch.arange(n, device=device)
    state = _reorder(model.start(model.encode(src)), rows.repeat_interleave(beam))
    tokens = torch.full((n * beam,), BOS, dtype=torch.long, device=device)
    scores = torch.full((n, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live hypothesis per source at first: no duplicates in the beam
    history = torch.zeros(n, beam, 0, dtype=torch.long, device=device)
    best = torch.full((n,), float("-inf"), device=device)
    best_ids = torch.zeros(n, max_length, dtype=torch.long, device=device)
    finished = torch.zeros(n, dtype=torch.long, device=device)
    for t in range(1, max_length + 1):
        logits, state = model.step(tokens, state)
        logp = scores[:, :, None] + _log_probs(logits).view(n, beam, -1)
        vocab = logp.shape[2]
        top, index = logp.view(n, beam * vocab).topk(min(2 * beam, beam * vocab), dim=1)
        origin, token = index // vocab, index % vocab
        normalized = top / float(t) ** length_penalty  # t tokens, EOS or the last one included
        if t == max_length:  # every hypothesis ends here, with EOS or cut by the length limit
            ending = torch.isfinite(top)
        else:
            rank = torch.arange(top.shape[1], device=device)[None, :]
            ending = (token == EOS) & (rank < beam) & torch.isfinite(top)
        value, pick = normalized.masked_fill(~ending, float("-inf")).max(dim=1)
        better = value > best
        if bool(better.any()):
            chosen = history[rows, origin[rows, pick]]  # (n, t - 1)
            last = token[rows, pick]
            ids = torch.cat([chosen, last[:, None].masked_fill(last[:, None] == EOS, PAD)], 1)
            best_ids[better] = torch.nn.functional.pad(ids, (0, max_length - t))[better]
            best[better] = value[better]
        finished += ending.sum(dim=1)
        if t == max_length or bool((finished >= beam).all()):
            break
        going = top.masked_fill(token == EOS, float("-inf"))
        scores, keep = going.topk(beam, dim=1)
        scores = scores.masked_fill((finished >= beam)[:, None], float("-inf"))
        origin, tokens = origin.gather(1, keep), token.gather(1, keep)
        history = torch.cat([history.gather(1, origin[:, :, None].expand_as(history)),
                             tokens[:, :, None]], dim=2)  # fmt: skip
        state = _reorder(state, (origin + rows[:, None] * beam).reshape(-1))
        tokens = tokens.reshape(-1)
    width = int((best_ids != PAD).sum(1).max()) if n else 0
    return best_ids[:, :width], best
