"""The progress bar: batches (not Lightning items), and a speed for short epochs too."""

from __future__ import annotations

import pytest


def test_a_short_epoch_shows_its_average_speed() -> None:
    from rich.progress import Progress

    from dnnexp.training.progress import AverageSpeedColumn, ThrottledRichProgressBar, average_speed

    clock = [0.0]
    progress = Progress(get_time=lambda: clock[0], auto_refresh=False)
    task_id = progress.add_task("Epoch 0", total=19)
    clock[0] = 0.5
    progress.update(task_id, completed=19)  # a throttled bar: one update for the whole epoch
    task = progress.tasks[0]
    assert task.speed is None  # rich's estimate needs two updates: it would show 0.00it/s
    assert average_speed(task) == pytest.approx(38.0)
    assert AverageSpeedColumn("").render(task).plain == "38.00it/s"

    columns = ThrottledRichProgressBar().configure_columns(trainer=None)
    assert sum(isinstance(c, AverageSpeedColumn) for c in columns) == 1
