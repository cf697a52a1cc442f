"""What a task decides, and nothing else: the loss, the epoch metrics and the run's score.

The training loop (`TrainingModule`) is the same for every task; it asks its objective for the
loss of a batch and for a fresh `EpochStats` per stage.
"""

from __future__ import annotations

from typing import Any

import torch

from dnnexp.config.metrics import TASK_METRICS, TASK_SCORE
from dnnexp.tasks.metrics import EpochStats, ReduceSum


class Objective:
    name: str = ""

    def __init__(self, num_outputs: int) -> None:
        self.num_outputs = num_outputs  # the model's output width

    @property
    def metrics(self) -> tuple[str, ...]:
        return TASK_METRICS[self.name]

    @property
    def score(self) -> str:
        """The validation metric a run returns (to a multirun, to a search)."""
        return TASK_SCORE[self.name]

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training loss, and the plain loss the metrics report (comparable across
        regularizers such as label smoothing)."""
        raise NotImplementedError

    def eval_loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def train_output(self, module: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training outputs of a batch (`module`: the TrainingModule; a decoder also reads
        the targets)."""
        return module(x)

    def evaluate(
        self, module: Any, x: torch.Tensor, y: torch.Tensor, stage: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A validation or test batch: what its stats read, and its loss."""
        output = module(x)
        return output, self.eval_loss(output, y)

    def test_extras(self, reduce_sum: ReduceSum) -> dict[str, float]:
        """Test metrics beyond the stats' own (seq2seq: those of beam search)."""
        return {}

    def summary(self) -> dict[str, Any]:
        """What the run's summary.json also records of how the metrics were computed."""
        return {}

    def new_stats(self) -> EpochStats:
        raise NotImplementedError

    def progress(self, metrics: dict[str, float]) -> dict[str, float]:
        """What the progress bar shows after a validation."""
        name = self.score.split("/", 1)[1]
        return {f"val_{name}": metrics[self.score], "train_loss": metrics["train/loss"]}
