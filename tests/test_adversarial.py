"""Adversarial training and robust evaluation: FGSM and PGD in the standardized space with the
budget in raw input units, the batch transform, the knobs' bad values, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from dnnexp.config.errors import ConfigError
from dnnexp.tasks.attacks import Attack, InputRange
from dnnexp.tasks.regularizers import AdversarialExamples
from tests.conftest import compose, run_cli, summary

RANGE = {"low": [-1.0], "high": [2.0], "unit": [0.25]}  # one raw unit = 0.25 standardized


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(),
                         nn.Dropout(0.5), nn.Linear(32, 3))  # fmt: skip


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_an_attack_raises_the_loss_within_its_budget_and_the_valid_range(method: str) -> None:
    model, x = _model(), torch.rand(64, 1, 4, 4) * 3 - 1  # inside [-1, 2]
    y = torch.randint(0, 3, (64,))
    model.train()
    before = [b.clone() for b in model.buffers()]
    attack = Attack(method, eps=2.0, input_range=InputRange(RANGE), steps=5)
    adversarial = attack(model, F.cross_entropy, x, y)
    model.eval()
    with torch.no_grad():
        assert F.cross_entropy(model(adversarial), y) > F.cross_entropy(model(x), y) + 0.05
    assert (adversarial - x).abs().max() <= 2.0 * 0.25 + 1e-6  # eps in raw units
    assert adversarial.min() >= -1.0 and adversarial.max() <= 2.0
    assert all(p.grad is None for p in model.parameters())  # only the input's gradient
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers(), strict=True))
    assert not adversarial.requires_grad


def test_pgd_is_at_least_as_strong_as_fgsm_on_a_trained_model() -> None:
    torch.manual_seed(1)
    x = torch.randn(256, 1, 4, 4)
    y = (x.flatten(1)[:, :3]).argmax(1)
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    bounds = InputRange({"low": [-10.0], "high": [10.0], "unit": [1.0]})

    def accuracy(method: str) -> float:
        adversarial = Attack(method, eps=0.3, input_range=bounds, steps=10)(
            model, F.cross_entropy, x, y
        )
        return float((model(adversarial).argmax(1) == y).float().mean())

    clean = float((model(x).argmax(1) == y).float().mean())
    assert clean > 0.9 and accuracy("pgd") <= accuracy("fgsm") < clean


def test_per_channel_ranges_and_units_apply_to_their_channel() -> None:
    bounds = InputRange({"low": [0.0, -5.0], "high": [1.0, 5.0], "unit": [0.1, 1.0]})
    x = torch.zeros(2, 2, 3, 3)
    assert bounds.raw(2.0, x).flatten().tolist() == pytest.approx([0.2, 2.0])
    clipped = bounds.clip(torch.full((2, 2, 3, 3), 3.0))
    assert clipped[:, 0].unique().tolist() == [1.0] and clipped[:, 1].unique().tolist() == [3.0]


def test_the_adversarial_share_of_a_batch_is_its_ratio() -> None:
    model, x, y = _model(), torch.rand(10, 1, 4, 4), torch.randint(0, 3, (10,))
    attack = Attack("fgsm", eps=1.0, input_range=InputRange(RANGE))
    out, labels = AdversarialExamples(attack, model, F.cross_entropy, 0.3)(x, y)
    changed = (out != x).flatten(1).any(1)
    assert changed[:3].all() and not changed[3:].any() and torch.equal(labels, y)


def test_the_data_module_gives_digits_valid_range_in_standardized_units() -> None:
    from dnnexp.data.datamodule import ArrayDataModule

    data = ArrayDataModule(compose().data, seed=0)
    data.setup()
    x = data.splits["train"][0]
    r = data.input_range
    assert r["low"] == pytest.approx([float(x.min())], abs=1e-5)  # pixel 0
    assert r["high"] == pytest.approx([float(x.max())], abs=1e-5)  # pixel 16
    assert (r["high"][0] - r["low"][0]) * 1 == pytest.approx(16 * r["unit"][0], rel=1e-5)


def test_attacks_under_regression_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"eval.attacks=\['pgd'\] scores accuracy under attack"):
        compose("task=regression", "data=diabetes", "eval.attacks=[pgd]")


@pytest.mark.slow
def test_adversarial_training_and_robust_evaluation_through_the_cli(tmp_path: Path) -> None:
    """A PGD-trained smoke run reports accuracy under both attacks; `dnnexp eval attack=...`
    scores its checkpoint at another budget."""
    proc = run_cli("train", "trainer=smoke", "reg=adversarial", "eval.attacks=[fgsm,pgd]",
                   "hydra.run.dir=run", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = summary(tmp_path / "run")["metrics"]
    assert 0 <= metrics["test/acc_pgd"] <= metrics["test/acc_fgsm"] <= 1
    assert metrics["test/acc_pgd"] < metrics["test/acc"]
    config = OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml")
    assert config.reg.adversarial.enabled and config.reg.adversarial.method == "pgd"
    ckpt = "run/checkpoints/best.ckpt"
    evaluated = run_cli("eval", f"ckpt={ckpt}", "attack=pgd", "attack.eps=0.5",
                        "attack.steps=3", "out=robust.json", cwd=tmp_path)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    result = json.loads((tmp_path / "robust.json").read_text())
    assert set(result["metrics"]) >= {"test/acc", "test/acc_pgd"}
    assert "test/acc_fgsm" not in result["metrics"]
    assert result["metrics"]["test/acc_pgd"] >= metrics["test/acc_pgd"]  # a smaller budget
    assert "test/acc_pgd" in evaluated.stdout


def test_dnnexp_eval_reads_attack_as_the_eval_keys() -> None:
    from dnnexp.commands.eval import _parse

    _, _, overrides = _parse(["ckpt=a.ckpt", "attack=pgd", "attack.eps=4", "attack.steps=3"])
    assert overrides == ["eval.attacks=[pgd]", "eval.eps=4", "eval.steps=3"]
    assert _parse(["ckpt=a.ckpt", "attack=[fgsm,pgd]"])[2] == ["eval.attacks=[fgsm,pgd]"]
