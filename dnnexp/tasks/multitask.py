"""Multi-task learning: one model whose outputs are one slice per head (`task.heads`): the
classes of a classification head (cross-entropy, `reg.label_smoothing`), one value of a
regression head (mse, huber or l1 on targets standardized with the training split's labelled
rows). A final Linear of width sum(widths) is exactly one linear head per task on the shared
trunk, so every model family serves as it is.

Targets are (N, heads): class indices or standardized values, NaN where a row has no label for
a head. Each head's loss is the mean over the rows that have its label (a batch without any
gives 0 for it, never NaN), and the loss is the sum of weight x head loss: a missing label
masks its head's loss for its row only, and its gradient is exactly zero there."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from dnnexp.config.metrics import task_metrics, task_score
from dnnexp.tasks.metrics import MultiTaskStats
from dnnexp.tasks.objective import Objective

REGRESSION_LOSSES = {"mse": F.mse_loss, "huber": F.huber_loss, "l1": F.l1_loss}


class MultiTask(Objective):
    name = "multitask"

    def __init__(
        self,
        heads: list[dict[str, Any]],
        target_std: list[float],
        label_smoothing: float = 0.0,
        huber_delta: float = 1.0,
        score: str | None = None,
    ) -> None:
        """`heads`: the data's (`preprocess["heads"]`: name, kind, loss, weight, width);
        `target_std`: each head's training std (1 for classification heads)."""
        start, laid_out = 0, []
        for head, std in zip(heads, target_std, strict=True):
            laid_out.append({**head, "start": start, "std": float(std)})
            start += int(head["width"])
        super().__init__(start)
        self.heads = laid_out
        self.label_smoothing = float(label_smoothing)
        self._losses = [
            None
            if head["kind"] == "classification"
            else partial(REGRESSION_LOSSES[head["loss"]], reduction="none")
            if head["loss"] != "huber"
            else partial(F.huber_loss, reduction="none", delta=float(huber_delta))
            for head in laid_out
        ]
        config = {"name": self.name, "heads": heads, "score": score}
        self._metrics = task_metrics(config)
        self._score = task_score(config)

    @property
    def metrics(self) -> tuple[str, ...]:
        return self._metrics

    @property
    def score(self) -> str:
        return self._score

    def row_losses(
        self, output: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0
    ) -> torch.Tensor:
        """(N, heads): each row's loss for each head, 0 where its label is missing."""
        columns = []
        for j, (head, loss) in enumerate(zip(self.heads, self._losses, strict=True)):
            target = y[:, j]
            missing = torch.isnan(target)
            filled = torch.where(missing, torch.zeros_like(target), target)
            part = output[:, head["start"] : head["start"] + head["width"]]
            if loss is None:
                rows = F.cross_entropy(
                    part, filled.long(), reduction="none", label_smoothing=smoothing
                )
            else:
                rows = loss(part[:, 0], filled.to(part.dtype))
            columns.append(torch.where(missing, torch.zeros_like(rows), rows))
        return torch.stack(columns, dim=1)

    def _weighted(self, output: torch.Tensor, y: torch.Tensor, smoothing: float) -> torch.Tensor:
        rows = self.row_losses(output, y, smoothing)
        counts = (~torch.isnan(y)).sum(0).clamp_min(1).to(rows.dtype)
        per_head = rows.sum(0) / counts  # a head without labels in the batch: 0
        total = per_head[0] * self.heads[0]["weight"]
        for j in range(1, len(self.heads)):
            total = total + per_head[j] * self.heads[j]["weight"]
        return total

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        smoothing = self.label_smoothing
        loss = self._weighted(output, y, smoothing)
        # the metric is the plain loss, comparable across regularizers such as label smoothing
        plain = self._weighted(output.detach(), y, 0.0) if smoothing > 0 else loss
        return loss, plain

    def eval_loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._weighted(output, y, 0.0)

    def new_stats(self) -> MultiTaskStats:
        return MultiTaskStats(self.heads, self.row_losses)

    def summary(self) -> dict[str, Any]:
        """summary.json: the heads (classes, labelled) and the score (`val/<head>/<metric>`),
        which a sweep, a search and the report read."""
        keys = ("name", "column", "kind", "loss", "weight", "classes")
        return {"heads": [{k: h.get(k) for k in keys} for h in self.heads], "score": self.score}
