"""The learning-rate range test: `dnnexp lr-find` and `lr_find.mode=apply`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dnnexp.training.lr_find import suggest
from tests.conftest import compose, metrics_rows, run_cli

SYNTHETIC = (
    "data=synthetic",
    "data.batch_size=16",
    "trainer.progress_bar=false",
    "trainer.model_summary=false",
    "scheduler=none",
    "trainer.max_epochs=2",
)


def _train(run_dir: Path, *overrides: str) -> dict:
    from dnnexp.training.run import train

    run_dir.mkdir()
    return train(compose(*SYNTHETIC, *overrides), run_dir=run_dir, overrides=list(overrides))


def test_the_suggestion_is_the_steepest_descent_after_the_first_points() -> None:
    lrs = [10 ** (-7 + 7 * i / 99) for i in range(100)]
    # flat, a fall steepest at index 60, then a rise
    losses = [2.0 - math.tanh((i - 60) / 5) for i in range(100)]
    assert suggest(lrs, losses) == lrs[60]
    assert suggest(lrs[:11], losses[:11]) is None  # too few points past the skipped ones


def test_apply_trains_at_the_suggestion_from_the_same_start(tmp_path: Path) -> None:
    """The range test trains a throwaway model: the run that follows equals a plain run at
    the suggested rate, bit for bit."""
    applied = _train(tmp_path / "applied", "lr_find.mode=apply", "lr_find.steps=30")
    found = applied["lr_find"]
    assert found["steps"] == 30 and found["suggestion"] is not None
    saved = json.loads((tmp_path / "applied" / "lr_find.json").read_text())
    assert saved["suggestion"] == found["suggestion"] and len(saved["loss"]) == 30
    assert (tmp_path / "applied" / "lr_find.png").stat().st_size > 0
    rows = metrics_rows(tmp_path / "applied")
    assert float(rows[0]["lr"]) == pytest.approx(found["suggestion"])
    plain = _train(tmp_path / "plain", f"optimizer.lr={found['suggestion']!r}")
    assert plain["metrics"] == applied["metrics"]


def test_the_ramp_stops_when_the_loss_diverges(tmp_path: Path) -> None:
    from dnnexp.data.datamodule import ArrayDataModule
    from dnnexp.training.lr_find import range_test

    cfg = compose(*SYNTHETIC, "optimizer=sgd", "lr_find.max_lr=1000", "lr_find.steps=200")
    data = ArrayDataModule.for_run(cfg)
    data.setup()
    result = range_test(cfg, data)
    assert result["steps"] < 200 and result["stopped_by"] != "steps"
    assert max(result["lr"]) < 1000


@pytest.mark.slow
def test_lr_find_command_writes_its_files_and_prints_the_suggestion(tmp_path: Path) -> None:
    done = run_cli("lr-find", "lr_find.steps=40", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "suggested optimizer.lr=" in done.stdout
    (out,) = (tmp_path / "outputs" / "lr_find").glob("*/*")
    assert (out / "lr_find.png").is_file()
    assert json.loads((out / "lr_find.json").read_text())["steps"] == 40
    assert not (out / "summary.json").exists()  # not a run: reports and sweeps skip it
