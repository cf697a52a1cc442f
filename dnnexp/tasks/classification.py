"""Classification: cross-entropy (with optional label smoothing) over `num_classes` logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dnnexp.tasks.metrics import ClassificationStats
from dnnexp.tasks.objective import Objective


class Classification(Objective):
    name = "classification"

    def __init__(self, num_classes: int, label_smoothing: float = 0.0) -> None:
        super().__init__(num_classes)
        self.label_smoothing = float(label_smoothing)

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        smoothing = self.label_smoothing
        loss = F.cross_entropy(output, y, label_smoothing=smoothing)
        # the metric is the plain cross-entropy, comparable across regularizers
        plain = F.cross_entropy(output.detach(), y) if smoothing > 0 else loss
        return loss, plain

    def eval_loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, y)

    def new_stats(self) -> ClassificationStats:
        return ClassificationStats(self.num_outputs)
