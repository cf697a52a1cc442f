"""A rich progress bar that redraws at most 5 times a second, not after every batch.

Lightning's RichProgressBar updates its metrics and redraws on every batch, which costs more
than a small model's whole training step. The training bar counts batches, not Lightning's items
of `trainer.steps_per_call` batches, and shows batches per second averaged over the epoch so far
(rich's own estimate needs two updates in a window, and a short epoch gets one: it showed 0.00).
"""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch.callbacks import RichProgressBar
from rich.progress import ProgressColumn
from rich.text import Text

REDRAW_INTERVAL_S = 0.2


class ThrottledRichProgressBar(RichProgressBar):
    def __init__(self) -> None:
        super().__init__(leave=False)
        self._last_draw = 0.0

    def _due(self, current: int, total: Any) -> bool:
        now = time.monotonic()
        if current >= total or now - self._last_draw >= REDRAW_INTERVAL_S:
            self._last_draw = now
            return True
        return False

    @property
    def total_train_batches(self) -> int | float:
        return getattr(self.trainer.train_dataloader, "num_batches", super().total_train_batches)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.is_disabled:
            return
        per_item = getattr(trainer.train_dataloader, "batches_per_item", 1)
        done = min((batch_idx + 1) * per_item, self.total_train_batches)
        if self.train_progress_bar_id is None or self._due(done, self.total_train_batches):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, done - 1)

    def on_validation_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, idx: int = 0
    ) -> None:
        if self._eval_due("val", batch_idx):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, idx)

    def on_test_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, idx: int = 0
    ) -> None:
        if self._eval_due("test", batch_idx):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, idx)

    def _eval_due(self, stage: str, batch_idx: int) -> bool:
        """A disabled bar (on every DDP rank but 0) draws nothing and has no current
        dataloader, so its batch count cannot be read there (Lightning asserts)."""
        if self.is_disabled:
            return False
        return self._due(batch_idx + 1, getattr(self, f"total_{stage}_batches_current_dataloader"))

    def configure_columns(self, trainer: Any) -> list:
        from lightning.pytorch.callbacks.progress.rich_progress import ProcessingSpeedColumn

        columns = super().configure_columns(trainer)
        return [
            AverageSpeedColumn(c.style) if isinstance(c, ProcessingSpeedColumn) else c
            for c in columns
        ]

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


def average_speed(task: Any) -> float:
    """Iterations per second: rich's recent-window estimate, else the average since the bar
    was (re)started, e.g. over one short epoch."""
    if task.speed is not None:
        return task.speed
    elapsed = task.finished_time if task.finished else task.elapsed
    return task.completed / elapsed if elapsed else 0.0


class AverageSpeedColumn(ProgressColumn):
    def __init__(self, style: Any) -> None:
        self.style = style
        super().__init__()

    def render(self, task: Any) -> Text:
        return Text(f"{average_speed(task):>.2f}it/s", style=self.style)
