"""Regression: one output per target column, trained on targets standardized with the training
split's mean and std; mse, rmse and mae are reported in the target's own units."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from dnnexp.tasks.metrics import RegressionStats
from dnnexp.tasks.objective import Objective


class Regression(Objective):
    name = "regression"

    def __init__(self, target_std: list[float], loss: str = "mse", huber_delta: float = 1.0):
        super().__init__(len(target_std))
        self.target_std = [float(s) for s in target_std]
        self._loss = {
            "mse": F.mse_loss,
            "huber": partial(F.huber_loss, delta=float(huber_delta)),
            "l1": F.l1_loss,
        }[loss]

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss = self._loss(output, y)
        return loss, loss

    def eval_loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._loss(output, y)

    def new_stats(self) -> RegressionStats:
        return RegressionStats(self.target_std)
