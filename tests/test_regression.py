"""Regression beside classification: metrics against scikit-learn (also summed over two ranks),
the tabular datasets, random splits with standardized targets, the one-line refusals, and real
runs through the CLI (train, a sweep's score, eval, report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dnnexp.config.errors import ConfigError
from dnnexp.tasks.metrics import RegressionStats
from tests.conftest import compose, run_cli, run_dirs, summary


def _stats_over(preds: torch.Tensor, ys: torch.Tensor, mean, std, batch: int) -> RegressionStats:
    """A stage's stats fed like the task feeds them: standardized values, batch by batch."""
    stats = RegressionStats(std.tolist())
    p, y = (preds - mean) / std, (ys - mean) / std
    for i in range(0, len(y), batch):
        loss = torch.nn.functional.mse_loss(p[i : i + batch], y[i : i + batch])
        stats.update(p[i : i + batch], y[i : i + batch], loss)
    return stats


def _sklearn(y, pred) -> dict[str, float]:
    from sklearn.metrics import (
        mean_absolute_error,
        mean_squared_error,
        r2_score,
        root_mean_squared_error,
    )

    return {
        "mse": mean_squared_error(y, pred),
        "rmse": root_mean_squared_error(y, pred),
        "mae": mean_absolute_error(y, pred),
        "r2": r2_score(y, pred),
    }


@pytest.mark.parametrize("targets", [1, 3])
def test_regression_metrics_match_sklearn_in_original_units(targets: int) -> None:
    g = torch.Generator().manual_seed(targets)
    y = 150 + 70 * torch.randn(301, targets, generator=g, dtype=torch.float64)
    pred = y + 40 * torch.randn(301, targets, generator=g, dtype=torch.float64)
    mean, std = y[:200].mean(0), y[:200].std(0)  # "training" statistics, not this split's
    got = _stats_over(pred, y, mean, std, batch=64).compute()
    expected = _sklearn(y.numpy(), pred.numpy())
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9), key
    standardized = ((pred - y) / std) ** 2
    assert got["loss"] == pytest.approx(float(standardized.mean()), rel=1e-9)


def test_regression_sums_add_up_over_two_ranks() -> None:
    """Each DDP rank holds part of the split; the metrics of the summed sums are those of the
    whole split (what `strategy.reduce(sums, 'sum')` computes), not a mean of per-rank ones."""
    g = torch.Generator().manual_seed(7)
    y = torch.randn(257, 2, generator=g, dtype=torch.float64) * torch.tensor([3.0, 50.0]) + 10
    pred = y + torch.randn(257, 2, generator=g, dtype=torch.float64) * torch.tensor([1.0, 30.0])
    mean, std = y.mean(0), y.std(0)
    rank0 = _stats_over(pred[:100], y[:100], mean, std, batch=32)
    rank1 = _stats_over(pred[100:], y[100:], mean, std, batch=32)
    other = rank1.sums()
    got = rank0.compute(lambda sums: sums + other)  # the all-reduce of two ranks
    for key, value in _sklearn(y.numpy(), pred.numpy()).items():
        assert got[key] == pytest.approx(value, rel=1e-9), key
    whole = _stats_over(pred, y, mean, std, batch=32).compute()
    assert got == pytest.approx(whole, rel=1e-12)
    assert rank0.compute()["r2"] != pytest.approx(whole["r2"])  # one rank alone differs


def test_a_constant_target_scores_like_sklearn() -> None:
    y = torch.full((10, 1), 5.0, dtype=torch.float64)
    perfect = _stats_over(y.clone(), y, torch.tensor([5.0]), torch.tensor([1.0]), 4).compute()
    off = _stats_over(y + 1, y, torch.tensor([5.0]), torch.tensor([1.0]), 4).compute()
    assert perfect["r2"] == 1.0 and off["r2"] == 0.0


def test_tabular_datasets_load_as_bundled() -> None:
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

    from dnnexp.data import DATASETS

    for name, reference in (
        ("breast_cancer", load_breast_cancer()),
        ("wine", load_wine()),
    ):
        x, y, classes = DATASETS[name](None)[:3]
        assert torch.allclose(x.double(), torch.as_tensor(reference.data), rtol=1e-6)
        assert y.dtype == torch.int64 and torch.equal(y, torch.as_tensor(reference.target))
        assert classes == list(reference.target_names)
    x, y, classes = DATASETS["diabetes"](None)[:3]
    raw = load_diabetes(scaled=False)
    assert x.shape == (442, 10) and y.shape == (442, 1) and classes is None
    assert torch.allclose(x.double(), torch.as_tensor(raw.data), rtol=1e-6)
    assert torch.allclose(y.double().flatten(), torch.as_tensor(raw.target))


def _data(*overrides: str):
    from dnnexp.data.datamodule import ArrayDataModule

    cfg = compose(*overrides)
    data = ArrayDataModule(cfg.data, cfg.seed, task=cfg.task.name)
    data.setup()
    return data


def test_regression_splits_are_random_and_targets_standardized_with_train_stats() -> None:
    data = _data("task=regression", "data=diabetes")
    sizes = {name: len(y) for name, (_, y) in data.splits.items()}
    assert sizes == {"train": 308, "val": 45, "test": 89}  # ceil(10%), ceil(20%) of 442
    x_train, y_train = data.splits["train"]
    assert data.input_shape == (10,) and data.num_outputs == 1 and data.num_classes == 0
    # features one by one, and the target, standardized with the training split only
    assert torch.allclose(x_train.mean(0), torch.zeros(10), atol=1e-5)
    assert torch.allclose(x_train.std(0), torch.ones(10), atol=1e-5)
    assert float(y_train.mean()) == pytest.approx(0, abs=1e-6)
    assert float(data.splits["test"][1].mean()) != pytest.approx(0, abs=1e-3)
    raw = torch.cat([y for _, y in data.splits.values()]) * data.target_stats["std"][0]
    assert (
        25 <= float(raw.min() + data.target_stats["mean"][0]) and data.target_stats["std"][0] > 50
    )
    again, other = (
        _data("task=regression", "data=diabetes"),
        _data("task=regression", "data=diabetes", "data.split_seed=1"),
    )
    assert torch.equal(again.splits["test"][1], data.splits["test"][1])
    assert not torch.equal(other.splits["test"][1], data.splits["test"][1])


def test_classification_splits_stay_stratified_and_stratify_false_draws_at_random() -> None:
    stratified = _data("data=wine")
    assert stratified.input_shape == (13,) and stratified.num_outputs == 3
    counts = torch.bincount(stratified.splits["test"][1], minlength=3).tolist()
    assert counts == [12, 14, 10]  # 59/71/48 wines of each class, 20% each
    plain = _data("data=wine", "data.stratify=false")
    assert torch.bincount(plain.splits["test"][1], minlength=3).tolist() != counts


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["task=regression"],
            "task=regression does not fit data=digits, whose targets are for classification:"
            " use task=classification, or data=diabetes/synthetic_regression",
        ),
        (
            ["data=diabetes"],
            "task=classification does not fit data=diabetes, whose targets are for regression",
        ),
        (
            ["task=regression", "data=diabetes", "reg=label_smoothing"],
            "reg.label_smoothing=0.1 applies to classification only",
        ),
        (
            ["task=regression", "data=diabetes", "data.stratify=true"],
            "data.stratify=true needs class labels",
        ),
        (
            [
                "task=regression",
                "data=diabetes",
                "reg=early_stopping",
                "reg.early_stopping.monitor=val/acc",
            ],
            "reg.early_stopping.monitor=val/acc is not a metric of task=regression; choose one of:"
            " val/loss, val/mse, val/rmse, val/mae, val/r2",
        ),
        (
            ["scheduler=plateau", "scheduler.monitor=val/r2"],
            "scheduler.monitor=val/r2 is not a metric of task=classification",
        ),
        (
            ["data=breast_cancer", "model=cnn"],
            "model=cnn reads images (channels, height, width); data=breast_cancer has tabular"
            " features: use model=mlp",
        ),
        (["task=regression", "data=diabetes", "model=lstm"], "model=lstm reads a sequence"),
        (["task=regression", "data=diabetes", "task.loss=mae"], "task.loss='mae' is not allowed"),
        (["task=regression", "data=diabetes", "task.huber_delta=0"], "task.huber_delta=0"),
        (["task=ranking"], "Could not find 'task/ranking'"),
    ],
)
def test_regression_misconfigurations_are_one_line(overrides: list[str], expected: str) -> None:
    with pytest.raises(Exception) as err:
        compose(*overrides)
    assert expected in str(err.value)
    if isinstance(err.value, ConfigError):
        assert "\n" not in str(err.value)


def test_tabular_synthetic_and_a_two_column_target_compose() -> None:
    cfg = compose("task=regression", "data=synthetic_regression", "data.num_targets=2")
    assert cfg.data.num_targets == 2 and list(cfg.data.shape) == [10]
    assert compose("data=synthetic", "data.shape=[12]").data.shape == [12]


def test_each_loss_trains_and_reports_in_target_units() -> None:
    from dnnexp.tasks.module import TrainingModule

    data = _data("task=regression", "data=synthetic_regression", "data.num_targets=2")
    x, y = data.splits["train"]
    for loss in ("mse", "huber", "l1"):
        cfg = compose(
            "task=regression", "data=synthetic_regression", f"task.loss={loss}", "model.hidden=[16]"
        )
        module = TrainingModule(OmegaConf.to_container(cfg), data.spec)
        value = module._loss(x[:32], y[:32])
        assert value.ndim == 0 and value.requires_grad and torch.isfinite(value)
        value = value.detach()
        out = module.model(x[:32]).detach()
        expected = {
            "mse": torch.nn.functional.mse_loss(out, y[:32]),
            "huber": torch.nn.functional.huber_loss(out, y[:32]),
            "l1": torch.nn.functional.l1_loss(out, y[:32]),
        }[loss]
        assert float(value) == pytest.approx(float(expected), rel=1e-5)


FAST = ["trainer.max_epochs=3", "trainer.progress_bar=false", "trainer.model_summary=false"]


@pytest.mark.slow
def test_regression_runs_through_the_cli_and_evaluates(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_cli(
        "train", "task=regression", "data=diabetes", *FAST, f"hydra.run.dir={run}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    s = summary(run)
    assert s["status"] == "completed" and s["task"] == "regression" and s["num_targets"] == 1
    assert set(s["target_stats"]) == {"mean", "std"} and "num_classes" not in s
    for key in ("test/loss", "test/mse", "test/rmse", "test/mae", "test/r2", "val/r2"):
        assert key in s["metrics"], key
    assert s["metrics"]["test/rmse"] == pytest.approx(s["metrics"]["test/mse"] ** 0.5)
    assert s["metrics"]["test/rmse"] > 20  # in the target's units (its std is ~77), not ~1
    assert "test/r2" in proc.stdout and "test/acc" not in proc.stdout
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/r2", "val/r2", "val/rmse", "val/mae"} <= set(header)
    evaluated = run_cli("eval", f"ckpt={run}/checkpoints/best.ckpt", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    scored = json.loads((run / "eval" / "best.json").read_text())["metrics"]
    assert scored == pytest.approx({k: v for k, v in s["metrics"].items() if k.startswith("test/")})


@pytest.mark.slow
def test_a_regression_sweep_returns_val_r2_and_reports_with_directions(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "train",
        "-m",
        "task=regression",
        "data=synthetic_regression",
        "data.num_targets=2",
        "reg=none,dropout",
        "seed=0,1",
        *FAST,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(": test/r2 ") == 4
    dirs = run_dirs(sweep)
    assert len(dirs) == 4 and all(summary(d)["status"] == "completed" for d in dirs)
    from dnnexp.sweep.job import objective_value

    assert objective_value(summary(dirs[0])) == summary(dirs[0])["metrics"]["val/r2"]
    report = run_cli("report", str(sweep), cwd=tmp_path)  # the default metric follows the task
    assert report.returncode == 0, report.stderr
    assert "test/r2 over seeds" in report.stdout and "val r2" in report.stdout
    assert "test/r2: higher is better" in report.stdout
    rmse = run_cli("report", str(sweep), "--metric", "test/rmse", cwd=tmp_path)
    assert "test/rmse: lower is better" in rmse.stdout
    rows = json.loads((sweep / "report.json").read_text())
    assert {(r["metric"], r["lower_is_better"]) for r in rows} == {("test/rmse", True)}
    assert (sweep / "learning_curves.png").is_file() and (sweep / "metric_test_rmse.png").is_file()
