"""Epoch metrics of each task, gathered per batch and computed once per epoch from sums.

Per batch a stage appends what it needs (for classification one argmax, for regression the
outputs) to lists, several times cheaper than a bincount with in-place updates, and far
cheaper than a torchmetrics update. At the end of an epoch `sums()` packs everything the
metrics need into one float64 vector that adds up over DDP ranks (`reduce_sum`, one
all-reduce), and `metrics_from()` turns the summed vector into the metrics.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dnnexp.config.metrics import TASK_METRICS
from dnnexp.data.text import EOS, PAD

ReduceSum = Callable[[torch.Tensor], torch.Tensor]


class EpochStats:
    """Outputs, targets and mean losses of one stage over one epoch."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.preds: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.losses: list[torch.Tensor] = []  # the mean loss of each batch
        self.sizes: list[int] = []

    def _prediction(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def update(self, output: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        self.preds.append(self._prediction(output))
        self.targets.append(y)
        self.losses.append(loss.detach())
        self.sizes.append(len(y))

    @property
    def loss_sum(self) -> torch.Tensor | None:
        if not self.losses:
            return None
        sizes = torch.tensor(self.sizes, dtype=torch.float64, device=self.losses[0].device)
        return (torch.stack(self.losses).double() * sizes).sum()

    def sums(self) -> torch.Tensor | None:
        """This process's sums, one float64 vector (None before the first batch)."""
        raise NotImplementedError

    def metrics_from(self, sums: torch.Tensor) -> dict[str, float]:
        """The metrics from sums added up over all processes."""
        raise NotImplementedError

    def compute(self, reduce_sum: ReduceSum = lambda t: t) -> dict[str, float]:
        sums = self.sums()
        return {} if sums is None else self.metrics_from(reduce_sum(sums))


class ClassificationStats(EpochStats):
    """loss, accuracy and macro precision/recall/F1 (over the classes seen in targets or
    predictions), from the confusion matrix."""

    def __init__(self, num_classes: int) -> None:
        self.c = num_classes
        super().__init__()

    def _prediction(self, output: torch.Tensor) -> torch.Tensor:
        return output.argmax(1)

    def sums(self) -> torch.Tensor | None:
        """The confusion matrix (row: target, column: prediction) and the loss sum. Counts are
        exact in float64 up to 2**53."""
        loss_sum = self.loss_sum
        if loss_sum is None:
            return None
        index = torch.cat(self.targets) * self.c + torch.cat(self.preds)
        confusion = torch.bincount(index, minlength=self.c * self.c).double()
        return torch.cat([confusion, loss_sum.reshape(1)])

    def metrics_from(self, sums: torch.Tensor) -> dict[str, float]:
        # a c x c matrix: plain Python is cheaper here than ~25 tiny tensor ops
        values = sums.tolist()
        c = self.c
        rows = [[int(v) for v in values[i * c : (i + 1) * c]] for i in range(c)]
        loss_sum = values[-1]
        tp = [rows[i][i] for i in range(c)]
        actual = [sum(row) for row in rows]
        predicted = [sum(column) for column in zip(*rows, strict=True)]
        n = sum(actual)
        seen = [i for i in range(c) if predicted[i] + actual[i] > 0]
        precision = [tp[i] / predicted[i] if predicted[i] else 0.0 for i in seen]
        recall = [tp[i] / actual[i] if actual[i] else 0.0 for i in seen]
        f1 = [
            2 * p * r / (p + r) if p + r > 0 else 0.0
            for p, r in zip(precision, recall, strict=True)
        ]
        return {
            "loss": loss_sum / n,
            "acc": sum(tp) / n,
            "precision": sum(precision) / len(seen),
            "recall": sum(recall) / len(seen),
            "f1": sum(f1) / len(seen),
        }


class RegressionStats(EpochStats):
    """loss (on standardized targets) and mse, rmse, mae in the target's own units, and r2.

    Outputs and targets stay standardized (mean 0, std 1 on the training split), where the sums
    are well conditioned in float64; `scale` (each target's training std) brings them back to
    the target's units. With several targets each metric is the mean over targets, as
    scikit-learn's `multioutput="uniform_average"` (rmse: the mean of each target's rmse).
    """

    def __init__(self, scale: list[float]) -> None:
        self.scale = torch.tensor(scale, dtype=torch.float64)
        self.t = len(scale)
        super().__init__()

    def _prediction(self, output: torch.Tensor) -> torch.Tensor:
        return output.detach()

    def sums(self) -> torch.Tensor | None:
        """n, the loss sum, then per target: sum of y, of y², of squared and of absolute errors."""
        loss_sum = self.loss_sum
        if loss_sum is None:
            return None
        y = torch.cat(self.targets).double().reshape(-1, self.t)
        error = torch.cat(self.preds).double().reshape(-1, self.t) - y
        n = torch.tensor([float(len(y))], dtype=torch.float64, device=y.device)
        per_target = [y.sum(0), (y * y).sum(0), (error * error).sum(0), error.abs().sum(0)]
        return torch.cat([n, loss_sum.reshape(1), *per_target])

    def metrics_from(self, sums: torch.Tensor) -> dict[str, float]:
        sums = sums.cpu()
        n, loss_sum, t = float(sums[0]), float(sums[1]), self.t
        sum_y, sum_y2, sse, sae = sums[2:].reshape(4, t)
        scale = self.scale
        mse = sse / n * scale**2
        total = sum_y2 - sum_y * sum_y / n  # n * variance of y (standardized units)
        # a constant target: r2 is 1 for a perfect fit and 0 otherwise (scikit-learn's rule)
        r2 = torch.where(total > 0, 1 - sse / total.clamp_min(1e-300), (sse == 0).double())
        return {
            "loss": loss_sum / n,
            "mse": float(mse.mean()),
            "rmse": float(mse.sqrt().mean()),
            "mae": float((sae / n * scale).mean()),
            "r2": float(r2.mean()),
        }


def edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance (insertions, deletions, substitutions each cost 1)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def closest_reference(output: list[int], references: list[list[int]]) -> tuple[int, int]:
    """(edit distance, length) of the reference closest to `output` (the shorter on a tie)."""
    return min((edit_distance(output, ref), len(ref)) for ref in references)


class Seq2SeqStats(EpochStats):
    """loss; for decoded outputs (N, L) against references (N, R, T), the token error rate
    (sum of each source's edit distance to its closest reference / sum of that reference's
    length) and the sequence error rate (sources whose output matches no reference). Training
    batches (teacher-forced logits) count their loss only.

    `detokenize` (ids -> texts; given where the target is words): also corpus BLEU (sacrebleu's
    defaults: 13a tokenization, exp smoothing), from each output's n-gram matches, n-gram counts
    and lengths against its own references, summed (over batches and processes) before the
    score, as sacrebleu's corpus score sums them."""

    def __init__(self, detokenize: Callable[[list[list[int]]], list[str]] | None = None) -> None:
        self.detokenize = detokenize
        self.bleu = None
        if detokenize is not None:
            from sacrebleu.metrics import BLEU

            self.bleu = BLEU()
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.edits = self.reference_tokens = self.wrong = 0
        self.bleu_stats = [0] * 10  # matches 1-4, n-grams 1-4, output and reference lengths

    def update(self, output: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        self.losses.append(loss.detach())
        self.sizes.append(len(y))
        if y.ndim != 3:
            return
        for out, refs in zip(output.tolist(), y.tolist(), strict=True):
            out = [t for t in out if t != PAD]
            references = [[t for t in ref if t not in (PAD, EOS)] for ref in refs if ref[0]]
            edits, length = closest_reference(out, references)
            self.edits += edits
            self.reference_tokens += length
            self.wrong += out not in references
            if self.bleu is not None:
                self._add_bleu(out, references)

    def _add_bleu(self, out: list[int], references: list[list[int]]) -> None:
        assert self.detokenize is not None and self.bleu is not None
        text, *refs = self.detokenize([out, *references])
        score = self.bleu.sentence_score(text, refs)
        found = [*score.counts, *score.totals, score.sys_len, score.ref_len]
        self.bleu_stats = [a + b for a, b in zip(self.bleu_stats, found, strict=True)]

    def bleu_signature(self) -> str:
        """sacrebleu's signature: its version and settings (nrefs "var": references per source
        vary, as they may in dnnexp's pairs)."""
        assert self.bleu is not None
        self.bleu.num_refs = -1
        return str(self.bleu.get_signature())

    def sums(self) -> torch.Tensor | None:
        loss_sum = self.loss_sum
        if loss_sum is None:
            return None
        n = float(sum(self.sizes))
        rest = [n, float(self.edits), float(self.reference_tokens), float(self.wrong)]
        if self.bleu is not None:
            rest += [float(v) for v in self.bleu_stats]
        return torch.cat([loss_sum.reshape(1), loss_sum.new_tensor(rest)])

    def metrics_from(self, sums: torch.Tensor) -> dict[str, float]:
        loss_sum, n, edits, tokens, wrong, *bleu = sums.tolist()
        metrics = {"loss": loss_sum / n}
        if tokens:  # decoded (validation, test)
            metrics.update(ter=edits / tokens, ser=wrong / n)
        if tokens and bleu and self.bleu is not None:
            counts = [int(v) for v in bleu]
            score = self.bleu.compute_bleu(counts[:4], counts[4:8], counts[8], counts[9], "exp")
            metrics["bleu"] = score.score
        return metrics


class MultiTaskStats(EpochStats):
    """task=multitask: each head's own stats (`ClassificationStats`, `RegressionStats`) over the
    rows that have its label, their sums one vector (still one all-reduce); `loss` the weighted
    sum of the heads' losses (each a mean over its labelled rows), as the task trains on.

    `heads`: each with `kind`, `name`, `weight`, `width`, `start` (its slice of the outputs)
    and `std` (a regression head's training std); `row_losses(output, y)`: the (N, heads)
    plain loss of every row, 0 where its label is missing. Per batch: an argmax per
    classification head, the outputs of each regression head and the loss sums."""

    def __init__(
        self,
        heads: list[dict],
        row_losses: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> None:
        self.heads = heads
        self.row_losses = row_losses
        self.subs: list[EpochStats] = [
            ClassificationStats(h["width"]) if h["kind"] == "classification" else
            RegressionStats([h["std"]])
            for h in heads
        ]  # fmt: skip
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.head_preds: list[list[torch.Tensor]] = [[] for _ in self.heads]
        self.head_losses: list[torch.Tensor] = []  # per batch: each head's loss sum

    def update(self, output: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        output = output.detach()
        self.losses.append(loss.detach())
        self.sizes.append(len(y))
        self.targets.append(y)
        with torch.no_grad():
            self.head_losses.append(self.row_losses(output, y).sum(0))
        for head, preds in zip(self.heads, self.head_preds, strict=True):
            part = output[:, head["start"] : head["start"] + head["width"]]
            preds.append(part.argmax(1) if head["kind"] == "classification" else part[:, 0])

    def _sizes(self) -> list[int]:
        """Each head's share of the sum vector."""
        return [h["width"] ** 2 + 1 if h["kind"] == "classification" else 6 for h in self.heads]

    def sums(self) -> torch.Tensor | None:
        """Each head's sub-stats' sums over its labelled rows, one after the other."""
        if not self.losses:
            return None
        y = torch.cat(self.targets)
        loss_sums = torch.stack(self.head_losses).double().sum(0)
        parts = []
        for j, (head, sub) in enumerate(zip(self.heads, self.subs, strict=True)):
            labelled = ~torch.isnan(y[:, j])
            target, pred = y[labelled, j], torch.cat(self.head_preds[j])[labelled]
            n = len(target)
            sub.reset()
            if head["kind"] == "classification":
                sub.targets, sub.preds = [target.long()], [pred]
            else:
                sub.targets, sub.preds = [target.reshape(-1, 1)], [pred.reshape(-1, 1)]
            sub.losses, sub.sizes = [loss_sums[j] / max(n, 1)], [n]
            parts.append(sub.sums())
        return torch.cat(parts)

    def metrics_from(self, sums: torch.Tensor) -> dict[str, float]:
        metrics: dict[str, float] = {"loss": 0.0}
        start = 0
        for head, sub, size in zip(self.heads, self.subs, self._sizes(), strict=True):
            part = sums[start : start + size]
            start += size
            n = float(part[:-1].sum()) if head["kind"] == "classification" else float(part[0])
            if n == 0:  # no row of this split has the head's label
                found = dict.fromkeys(TASK_METRICS[head["kind"]], float("nan"))
            else:
                found = sub.metrics_from(part)
                metrics["loss"] += head["weight"] * found["loss"]
            metrics.update({f"{head['name']}/{k}": v for k, v in found.items()})
        return metrics
