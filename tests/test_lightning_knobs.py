"""Lightning's own Trainer knobs, with Lightning's meaning, under dnnexp's manual optimization,
several steps per call and exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dnnexp.config.errors import ConfigError, RunError
from dnnexp.data.loader import plan_items
from tests.conftest import compose, metrics_rows, run_cli, run_here, summary

BASE = (
    "data=synthetic",
    "data.num_samples=300",
    "data.batch_size=16",
    "trainer.progress_bar=false",
    "trainer.model_summary=false",
    "trainer.checkpoint_interval_s=0",
)
BATCHES = 13  # training batches per epoch: 300 * 0.7 = 210 samples, batches of 16


def _train(run_dir: Path, *overrides: str) -> dict:
    from dnnexp.training.run import train

    run_dir.mkdir(parents=True, exist_ok=True)
    return train(compose(*BASE, *overrides), run_dir=run_dir, overrides=list(overrides))


def test_the_training_epoch_has_the_batches_these_tests_count() -> None:
    from dnnexp.data.datamodule import ArrayDataModule

    data = ArrayDataModule.for_run(compose(*BASE))
    data.setup()
    assert data.train_dataloader().num_batches == BATCHES


def _weights(run_dir: Path, name: str = "last.ckpt") -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / name, weights_only=True)["state_dict"]


def _step(run_dir: Path, name: str = "last.ckpt") -> int:
    return torch.load(run_dir / "checkpoints" / name, weights_only=True)["global_step"]


# ------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    "override",
    [
        "trainer.fast_dev_run=true",
        "trainer.fast_dev_run=3",
        "trainer.max_steps=10",
        "trainer.max_time=00:00:30:00",
        "trainer.val_check_interval=0.25",
        "trainer.val_check_interval=5.0",
        "trainer.check_val_every_n_epoch=2",
        "trainer.accumulate_grad_batches=4",
        "trainer.num_sanity_val_steps=2",
        "trainer.log_every_n_steps=10",
        "trainer.benchmark=true",
        "trainer.detect_anomaly=true",
        "trainer.profiler=simple",
    ],
)
def test_lightning_knobs_are_accepted(override: str) -> None:
    key, value = override.split("=", 1)
    assert str(compose(override).trainer[key.split(".")[1]]).lower() == value.lower()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("+trainer.gradient_clip_val=1.0", "gradient clipping is reg.grad_clip"),
        ("+ckpt_path=last.ckpt", "ckpt_path: not a dnnexp key; to continue a run use resume="),
        ("+trainer.ckpt_path=x", "trainer.ckpt_path: not a dnnexp key; to continue a run use"),
        ("trainer.fast_dev_run=-1", "trainer.fast_dev_run=-1 must be true, false or a number"),
        ("trainer.max_steps=0", "trainer.max_steps=0 trains nothing"),
        ("trainer.max_steps=-2", "trainer.max_steps=-2 is out of range: must be at least -1"),
        ("trainer.max_time=1h", "trainer.max_time='1h' must be DD:HH:MM:SS"),
        ("trainer.val_check_interval=2.5", "trainer.val_check_interval=2.5 must be a share"),
        ("trainer.val_check_interval=0", "trainer.val_check_interval=0.0 is out of range"),
        ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches=0 is out of"),
        ("trainer.profiler=fancy", "choose one of: null, simple, advanced, pytorch"),
        ("trainer.num_sanity_val_steps=-2", "trainer.num_sanity_val_steps=-2 is out of range"),
    ],
)
def test_bad_lightning_knobs_fail_in_one_line(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        compose(override)
    assert expected in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "trainer.gradient_clip_val=1.0",
            "error: trainer.gradient_clip_val: not a dnnexp key; gradient clipping is"
            " reg.grad_clip (e.g. reg.grad_clip=1.0)\n",
        ),
        (
            "trainer.enable_progress_bar=false",
            "error: trainer.enable_progress_bar: not a dnnexp key; use trainer.progress_bar\n",
        ),
    ],
)
def test_lightning_names_of_dnnexp_knobs_point_to_them(
    tmp_path: Path, override: str, expected: str
) -> None:
    proc = run_here("train", override, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr == expected
    assert not (tmp_path / "outputs").exists()


def test_fast_dev_run_cannot_resume_a_run() -> None:
    with pytest.raises(ConfigError, match="would overwrite that run's summary.json"):
        compose("trainer.fast_dev_run=true", "resume=outputs/some/run")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((19, 16, 1, 1.0), (16, None)),  # once per epoch: items of steps_per_call batches
        ((19, 16, 3, 1.0), (48, None)),  # steps_per_call optimizer steps of 3 batches
        ((19, 16, 1, 0.5), (9, 1)),  # int(19 * 0.5) = 9 batches between validations
        ((19, 4, 1, 0.5), (3, 3)),  # 9 batches: items of 3 (the largest divisor <= 4)
        ((19, 16, 2, 0.5), (8, 1)),  # 9 batches -> 4 whole steps of 2 batches
        ((20, 16, 1, 5.0), (5, 1)),  # every 5 batches
        ((20, 16, 1, 20.0), (16, None)),  # a whole epoch
    ],
)
def test_plan_items_aligns_items_with_validations_and_steps(args: tuple, expected: tuple) -> None:
    assert plan_items(*args) == expected


def test_val_check_interval_beyond_an_epoch_is_a_run_error() -> None:
    with pytest.raises(RunError, match="val_check_interval=30 batches is more than an epoch"):
        plan_items(19, 16, 1, 30.0)


# ------------------------------------------------------------------- accumulate_grad_batches
def test_accumulating_two_batches_of_32_gives_the_weights_of_one_batch_of_64(
    tmp_path: Path,
) -> None:
    """No batch norm, no dropout: the mean loss over 64 samples is the mean of the two halves'
    mean losses, so the optimizer steps (and the per-step cosine schedule, which counts
    optimizer steps) are the same."""
    common = ("model.norm=none", "scheduler=cosine", "trainer.max_epochs=2")
    _train(tmp_path / "big", *common, "data.batch_size=64", "trainer.limit_train_batches=3")
    _train(
        tmp_path / "acc",
        *common,
        "data.batch_size=32",
        "trainer.limit_train_batches=6",
        "trainer.accumulate_grad_batches=2",
    )
    assert _step(tmp_path / "big") == _step(tmp_path / "acc") == 6
    big, acc = _weights(tmp_path / "big"), _weights(tmp_path / "acc")
    for key in big:
        torch.testing.assert_close(acc[key], big[key], rtol=1e-4, atol=1e-6)
    _train(tmp_path / "plain", *common, "data.batch_size=32", "trainer.limit_train_batches=6")
    plain = _weights(tmp_path / "plain")  # the control: 12 steps of 32, other weights
    assert _step(tmp_path / "plain") == 12
    assert any(not torch.allclose(plain[key], big[key], rtol=1e-4, atol=1e-6) for key in big)


def test_accumulation_is_the_same_for_any_steps_per_call(tmp_path: Path) -> None:
    """Items of steps_per_call x accumulate batches: an odd accumulation, the epoch's partial
    last step included, gives the same numbers bit for bit as one step per call."""
    common = ("trainer.accumulate_grad_batches=3", "trainer.max_epochs=2", "reg=dropout")
    one = _train(tmp_path / "one", *common, "trainer.steps_per_call=1")
    many = _train(tmp_path / "many", *common, "trainer.steps_per_call=4")
    assert metrics_rows(tmp_path / "one") == metrics_rows(tmp_path / "many")
    assert one["metrics"] == many["metrics"]
    assert _step(tmp_path / "one") == 2 * -(-BATCHES // 3)  # each epoch's last step: 1 batch


# ----------------------------------------------------------------------- max_steps, sanity
def test_max_steps_stops_at_that_optimizer_step(tmp_path: Path) -> None:
    result = _train(tmp_path, "trainer.max_steps=7", "trainer.steps_per_call=16")
    assert _step(tmp_path) == 7  # not 16: the task stops inside the item
    assert result["status"] == "completed"


def test_sanity_check_anomaly_benchmark_and_max_time_train_as_usual(tmp_path: Path) -> None:
    result = _train(
        tmp_path,
        "trainer.max_epochs=2",
        "trainer.num_sanity_val_steps=2",
        "trainer.detect_anomaly=true",
        "trainer.benchmark=true",
        "trainer.max_time=00:01:00:00",
    )
    rows = metrics_rows(tmp_path)
    assert [r["epoch"] for r in rows] == ["0", "1"]  # the sanity check adds no row
    assert result["epochs"] == 2


def test_max_time_stops_the_run(tmp_path: Path) -> None:
    result = _train(tmp_path, "trainer.max_epochs=100000", "trainer.max_time=00:00:00:01")
    assert result["status"] == "completed" and 0 < result["epochs"] < 100000


# --------------------------------------------------------------------- validation schedule
def test_val_check_interval_validates_several_times_an_epoch(tmp_path: Path) -> None:
    """Two validations per epoch: one metrics.csv row each, with its epoch and step; best.ckpt
    is the best validation and early stopping counts validations."""
    result = _train(
        tmp_path,
        "trainer.max_epochs=3",
        "trainer.val_check_interval=0.5",
        "trainer.steps_per_call=4",
    )
    rows = metrics_rows(tmp_path)  # int(13 * 0.5) = 6: validations after batches 6 and 12
    assert [(r["epoch"], r["step"]) for r in rows] == [
        (str(e), str(e * BATCHES + s)) for e in range(3) for s in (6, 12)
    ]
    losses = [float(r["val/loss"]) for r in rows]
    best = losses.index(min(losses))
    assert result["best_step"] == int(rows[best]["step"]) == _step(tmp_path, "best.ckpt")
    assert result["best_epoch"] == int(rows[best]["epoch"])
    assert _step(tmp_path) == 3 * BATCHES  # last.ckpt: the end of the last epoch


def test_left_over_batches_get_a_validation_when_a_period_is_one_call(tmp_path: Path) -> None:
    """A period of 6 batches in one Lightning call (steps_per_call 16): the 13th batch is an
    item of its own, and Lightning validates after every item. With steps_per_call=4 (above)
    it is validated with the next epoch's first period instead."""
    _train(tmp_path, "trainer.max_epochs=2", "trainer.val_check_interval=0.5")
    steps = [int(r["step"]) for r in metrics_rows(tmp_path)]
    assert steps == [6, 12, 13, 19, 25, 26]


def test_early_stopping_counts_validations(tmp_path: Path) -> None:
    """Validations at batches 6 and 12, each one Lightning item (steps_per_call 16): patience
    1 and an improvement no epoch can make stop the run at its second validation."""
    result = _train(
        tmp_path,
        "trainer.max_epochs=5",
        "trainer.val_check_interval=0.5",
        "reg=early_stopping",
        "reg.early_stopping.patience=1",
        "reg.early_stopping.min_delta=100",
    )
    rows = metrics_rows(tmp_path)
    assert [(r["epoch"], r["step"]) for r in rows] == [("0", "6"), ("0", "12")]
    best = min(rows, key=lambda r: float(r["val/loss"]))  # best.ckpt follows val/loss itself
    assert result["best_step"] == int(best["step"]) == _step(tmp_path, "best.ckpt")
    assert result["epochs"] == 1


def test_check_val_every_n_epoch_keeps_last_ckpt_at_the_latest_epoch(tmp_path: Path) -> None:
    _train(tmp_path, "trainer.max_epochs=3", "trainer.check_val_every_n_epoch=2")
    assert [r["epoch"] for r in metrics_rows(tmp_path)] == ["1"]
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2  # trained after the last validation, still saved


def test_resume_from_a_validation_in_the_middle_of_an_epoch_is_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run interrupted after its first mid-epoch validation and resumed: the same rows, steps
    and metrics as the run that went straight through (the loader skips the trained batches,
    the per-step schedule and the random draws go on where they were)."""
    import lightning as L

    import dnnexp.training.run
    from dnnexp.training.run import train

    common = ("trainer.val_check_interval=0.5", "reg=[dropout,augment]", "trainer.max_epochs=2")
    straight = _train(tmp_path / "straight", *common)

    class InterruptAfterFirstValidation(L.Callback):
        def on_train_batch_start(self, trainer, *args) -> None:
            if trainer.global_step >= 6:  # after the validation at step 6 and its checkpoint
                raise KeyboardInterrupt

    build = dnnexp.training.run.build_trainer

    def interrupted_trainer(*args, **kwargs):
        trainer = build(*args, **kwargs)
        trainer.callbacks.append(InterruptAfterFirstValidation())
        return trainer

    monkeypatch.setattr(dnnexp.training.run, "build_trainer", interrupted_trainer)
    with pytest.raises(SystemExit):
        _train(tmp_path / "stopped", *common)
    monkeypatch.setattr(dnnexp.training.run, "build_trainer", build)
    assert _step(tmp_path / "stopped") == 6 and len(metrics_rows(tmp_path / "stopped")) == 1
    cfg = compose(*BASE, *common, f"resume={tmp_path / 'stopped'}")
    resumed = train(cfg, run_dir=tmp_path / "stopped", overrides=[])
    assert metrics_rows(tmp_path / "stopped") == metrics_rows(tmp_path / "straight")
    assert resumed["metrics"] == straight["metrics"]
    assert _step(tmp_path / "stopped") == _step(tmp_path / "straight") == 2 * BATCHES


# ----------------------------------------------------------------- logging, profiler, fast
def test_log_every_n_steps_writes_step_rows(tmp_path: Path) -> None:
    _train(tmp_path, "trainer.max_epochs=2", "trainer.log_every_n_steps=5")
    import csv

    with (tmp_path / "metrics_steps.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(5, 2 * BATCHES + 1, 5))
    assert all(float(r["train/loss_step"]) > 0 and float(r["lr_step"]) > 0 for r in rows)
    assert len(metrics_rows(tmp_path)) == 2  # metrics.csv keeps one row per validation


def test_profiler_writes_its_report_into_the_run_dir(tmp_path: Path) -> None:
    _train(tmp_path, "trainer.max_epochs=1", "trainer.profiler=simple")
    report = (tmp_path / "profile" / "fit-profile.txt").read_text()
    assert "run_training_epoch" in report


@pytest.mark.parametrize(("fast", "batches"), [("true", 1), ("3", 3)])
def test_fast_dev_run_trains_that_many_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast: str, batches: int
) -> None:
    from dnnexp.tasks.module import TrainingModule

    seen, loss = [], TrainingModule._loss
    monkeypatch.setattr(
        TrainingModule, "_loss", lambda self, x, y: seen.append(len(y)) or loss(self, x, y)
    )
    result = _train(tmp_path, f"trainer.fast_dev_run={fast}", "trainer.steps_per_call=16")
    assert seen == [16] * batches  # batches, not Lightning items of 16 batches
    assert result["fast_dev_run"] == batches and result["epochs"] == 1


@pytest.mark.slow
def test_fast_dev_run_writes_nothing_but_its_summary(tmp_path: Path) -> None:
    proc = run_cli(
        "train",
        "trainer.fast_dev_run=true",
        "trainer.progress_bar=false",
        "hydra.run.dir=dev",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = summary(tmp_path / "dev")
    assert result["status"] == "completed" and result["fast_dev_run"] == 1
    assert result["epochs"] == 1 and result["checkpoint"] is None
    assert not (tmp_path / "dev" / "checkpoints").exists()
    assert not (tmp_path / "dev" / "metrics.csv").exists()
    assert "fast dev run" in proc.stdout
    # a fast dev run never reuses a run dir (nor resumes a run: test_fast_dev_run_cannot_...)
    again = run_cli("train", "trainer.fast_dev_run=true", "hydra.run.dir=dev", cwd=tmp_path)
    assert again.returncode == 2 and "already holds a run" in again.stderr


def test_eval_scores_as_many_test_batches_as_its_config_says(tmp_path: Path) -> None:
    """`dnnexp eval` keeps the run's trainer.limit_test_batches (so it repeats the run's own
    test metrics) and takes another from its overrides."""
    from dnnexp.evaluation.evaluate import evaluate

    run = _train(
        tmp_path, "trainer.max_epochs=1", "trainer.limit_test_batches=2", "data.eval_batch_size=16"
    )
    best = tmp_path / "checkpoints" / "best.ckpt"
    again = evaluate(best, tmp_path / "again.json", [])["metrics"]
    assert again == pytest.approx({k: v for k, v in run["metrics"].items() if k in again})
    whole = evaluate(best, tmp_path / "whole.json", ["trainer.limit_test_batches=1.0"])["metrics"]
    assert whole["test/loss"] != pytest.approx(again["test/loss"])  # 60 test rows, not 32
