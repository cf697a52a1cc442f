"""reg=ema and reg=swa: the average is what is evaluated, saved, tested and resumed."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from dnnexp.config.errors import ConfigError
from dnnexp.tasks.averaging import TRAINED_KEY, WeightAverage
from tests.conftest import compose, metrics_rows, train_here

SYNTHETIC = (
    "data=synthetic",
    "data.batch_size=16",
    "trainer.progress_bar=false",
    "trainer.model_summary=false",
    "trainer.checkpoint_interval_s=0",
)


def _train(run_dir: Path, *overrides: str, resume: Path | None = None) -> dict:
    return train_here(run_dir, SYNTHETIC, *overrides, resume=resume)


def test_ema_follows_its_formula_with_warmup() -> None:
    """avg_0 = w_0; avg_n = d_n avg_{n-1} + (1 - d_n) w_n, d_n = min(decay, (1+n)/(10+n))."""
    model = nn.Linear(3, 2)
    average = WeightAverage(model, ema_decay=0.9)
    expected = None
    for n in range(30):
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        average.update(model)
        w = model.weight.detach().clone()
        if expected is None:
            expected = w
        else:
            d = min(0.9, (1 + n) / (10 + n))
            expected = d * expected + (1 - d) * w
    assert average.count == 30
    torch.testing.assert_close(average.averaged.module.weight, expected)


def test_swa_is_the_mean_of_the_averaged_steps_and_evaluating_swaps_it_in_and_back() -> None:
    model = nn.Linear(3, 2)
    average = WeightAverage(model, swa={"start_epoch": 0, "lr": None, "anneal_epochs": 1})
    seen = []
    for _ in range(5):
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        seen.append(model.weight.detach().clone())
        average.update(model)
    trained = model.weight.detach().clone()
    with average.evaluating(model):
        torch.testing.assert_close(model.weight.detach(), torch.stack(seen).mean(0))
    assert torch.equal(model.weight.detach(), trained)


def test_swa_learning_rate_anneals_from_the_rate_at_its_start() -> None:
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    average = WeightAverage(model, swa={"start_epoch": 2, "lr": 0.01, "anneal_epochs": 2})
    assert average.swa_lrs(optimizer, 1) is None
    first = average.swa_lrs(optimizer, 2)[0]
    assert first == pytest.approx(0.01 * 0.5 + 0.1 * 0.5)  # half way (cosine) after 1 of 2
    optimizer.param_groups[0]["lr"] = first
    assert average.swa_lrs(optimizer, 3)[0] == pytest.approx(0.01)
    assert average.swa_lrs(optimizer, 9)[0] == pytest.approx(0.01)


@pytest.mark.slow
@pytest.mark.parametrize(
    "reg",
    [
        "reg=ema reg.ema.decay=0.9",
        "reg=swa reg.swa.start=1 reg.swa.lr=0.01 reg.swa.anneal_epochs=2",
        "reg=swa reg.swa.start=1 model=cnn model.channels=[4] model.norm=batch",
    ],
    ids=["ema", "swa", "swa-batchnorm"],
)
def test_an_averaged_run_resumes_exactly_and_tests_the_average(tmp_path: Path, reg: str) -> None:
    """A run stopped after 2 epochs and resumed to 3 equals a run of 3 epochs (rows, metrics);
    its checkpoints hold the average as the model and the trained weights beside; `dnnexp
    eval` of best.ckpt gives the run's test metrics, and they differ from the trained weights'."""
    from dnnexp.evaluation.evaluate import evaluate
    from dnnexp.models.weights import load_checkpoint

    knobs = ["scheduler=none", *reg.split()]  # a cosine schedule depends on max_epochs
    straight = _train(tmp_path / "straight", *knobs, "trainer.max_epochs=4")
    _train(tmp_path / "stopped", *knobs, "trainer.max_epochs=2")
    resumed = _train(
        tmp_path / "stopped", *knobs, "trainer.max_epochs=4", resume=tmp_path / "stopped"
    )
    assert metrics_rows(tmp_path / "stopped") == metrics_rows(tmp_path / "straight")
    assert resumed["metrics"] == straight["metrics"]

    best = tmp_path / "straight" / "checkpoints" / "best.ckpt"
    ckpt = load_checkpoint(best)
    trained = ckpt[TRAINED_KEY]
    state = ckpt["state_dict"]
    assert trained.keys() <= state.keys()
    assert any(not torch.equal(state[k], trained[k]) for k in trained)
    evaluated = evaluate(best, tmp_path / "eval.json", [])
    for key, value in evaluated["metrics"].items():
        assert value == pytest.approx(straight["metrics"][key], rel=1e-6, abs=1e-9)
    ckpt["state_dict"].update(trained)  # the trained weights alone score differently
    raw = evaluate(best, tmp_path / "raw.json", [], ckpt=ckpt)
    assert raw["metrics"]["test/loss"] != pytest.approx(straight["metrics"]["test/loss"])


def test_swa_sets_its_learning_rate_from_its_start(tmp_path: Path) -> None:
    _train(
        tmp_path / "run",
        "scheduler=cosine",
        "reg=swa",
        "reg.swa.start=2",
        "reg.swa.lr=0.0001",
        "trainer.max_epochs=4",
    )
    lrs = [float(row["lr"]) for row in metrics_rows(tmp_path / "run")]
    assert lrs[0] > lrs[1] > 0.0001  # the cosine schedule, then SWA's rate (annealed in 1 epoch)
    assert lrs[2:] == pytest.approx([0.0001, 0.0001])


def test_ema_changes_what_validation_sees(tmp_path: Path) -> None:
    plain = _train(tmp_path / "plain", "trainer.max_epochs=2")
    ema = _train(tmp_path / "ema", "reg=ema", "reg.ema.decay=0.99", "trainer.max_epochs=2")
    assert plain["metrics"]["train/loss"] == ema["metrics"]["train/loss"]  # the same training
    assert plain["metrics"]["val/loss"] != ema["metrics"]["val/loss"]  # another model evaluated
    assert math.isfinite(ema["metrics"]["test/loss"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["reg=[ema,swa]"],
            r"reg.ema and reg.swa both average the weights: pick one",
        ),
        (["reg.swa.lr=0.1"], r"reg.swa.lr=0.1 applies once SWA starts: add reg=swa"),
        (
            ["reg=swa", "reg.swa.start=5", "trainer.max_epochs=5"],
            r"reg.swa.start=5.0 is epoch 5, not before trainer.max_epochs=5",
        ),
        (["reg=ema", "reg.ema.decay=1"], r"reg.ema.decay=1"),
        (
            ["reg=ema", "prune.amount=0.5"],
            r"reg.ema / reg.swa with prune.amount > 0",
        ),
    ],
)
def test_averaging_refusals_are_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        compose(*overrides)
    assert "\n" not in str(err.value)
