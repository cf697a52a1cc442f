"""A rich progress bar that redraws at most 5 times a second, not after every batch.

Lightning's RichProgressBar updates its metrics and redraws on every batch, which costs more
than a small model's whole training step. The training bar counts batches, not Lightning's items
of `trainer.steps_per_call` batches.
"""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch.callbacks import RichProgressBar

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
        per_item = getattr(trainer.train_dataloader, "batches_per_item", 1)
        done = min((batch_idx + 1) * per_item, self.total_train_batches)
        if self.train_progress_bar_id is None or self._due(done, self.total_train_batches):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, done - 1)

    def on_validation_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._due(batch_idx + 1, self.total_val_batches_current_dataloader):
            super().on_validation_batch_end(
                trainer, pl_module, outputs, batch, batch_idx, dataloader_idx
            )

    def on_test_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._due(batch_idx + 1, self.total_test_batches_current_dataloader):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
