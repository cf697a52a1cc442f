"""Sequence to sequence: cross-entropy over the target's tokens (padding masked), each step fed
the reference's previous token (teacher forcing, or scheduled sampling below 1); validation and
test decode (greedy; the test also with beam search) and score the outputs against every
reference of their source: token error rate (edit distance to the closest reference over that
reference's length, summed over sources) and sequence error rate (outputs matching none); where
the target is words (`data.target_tokens=word|sentencepiece`), also corpus BLEU (sacrebleu)."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from dnnexp.data.local_files import say
from dnnexp.data.text import PAD, decode
from dnnexp.models.decoding import beam_search, greedy
from dnnexp.tasks.metrics import ReduceSum, Seq2SeqStats
from dnnexp.tasks.objective import Objective


class Seq2Seq(Objective):
    name = "seq2seq"

    def __init__(
        self,
        num_outputs: int,
        label_smoothing: float,
        teacher_forcing: float,
        max_length: int,
        beam: int,
        length_penalty: float,
        target_text: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(num_outputs)
        self.label_smoothing, self.teacher_forcing = float(label_smoothing), teacher_forcing
        self.max_length, self.beam, self.length_penalty = max_length, beam, length_penalty
        self.detokenize = _bleu_detokenizer(target_text)
        self.beam_stats = self.new_stats()  # the test split decoded with beam search

    def train_output(self, module: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return module(x, y, self.teacher_forcing)

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, target = output.flatten(0, 1), y[:, : output.shape[1]].flatten()
        smoothing = self.label_smoothing
        loss = F.cross_entropy(logits, target, ignore_index=PAD, label_smoothing=smoothing)
        plain = (
            F.cross_entropy(logits.detach(), target, ignore_index=PAD) if smoothing > 0 else loss
        )
        return loss, plain

    def eval_loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(output, y)[1]

    def evaluate(
        self, module: Any, x: torch.Tensor, y: torch.Tensor, stage: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy outputs (N, L) and the teacher-forced loss of the first reference."""
        first = y[:, 0]
        loss = self.eval_loss(module(x, first), first)
        if stage == "test" and self.beam > 1:
            ids, _ = beam_search(module.model, x, self.beam, self.max_length, self.length_penalty)
            self.beam_stats.update(ids, y, loss)
        return greedy(module.model, x, self.max_length), loss

    def test_extras(self, reduce_sum: ReduceSum) -> dict[str, float]:
        if not self.beam_stats.sizes:
            return {}
        metrics = self.beam_stats.compute(reduce_sum)
        self.beam_stats.reset()
        return {f"test/{name}_beam": value for name, value in metrics.items() if name != "loss"}

    def new_stats(self) -> Seq2SeqStats:
        return Seq2SeqStats(self.detokenize)

    def summary(self) -> dict[str, Any]:
        """sacrebleu's signature of the BLEU scores (its version, tokenization, smoothing)."""
        return {"bleu_signature": self.beam_stats.bleu_signature()} if self.detokenize else {}


BLEU_MISSING = "test/bleu needs sacrebleu (pip install 'dnnexp[text]'): BLEU left out"


def _bleu_detokenizer(target_text: dict[str, Any] | None) -> Any:
    """ids -> texts for BLEU where the targets are words (not characters), with sacrebleu."""
    if target_text is None or target_text["tokens"] == "char":
        return None
    try:
        import sacrebleu  # noqa: F401
    except ImportError:
        say(BLEU_MISSING)
        return None
    return partial(decode, spec=target_text)
