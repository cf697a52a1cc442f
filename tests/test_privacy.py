"""privacy=dp: the ledger is Opacus's accountant, resumes exactly, clips per sample; the
refusals are one line before training; the report draws the metric against ε."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from opacus.accountants import PRVAccountant, RDPAccountant
from torch import nn

from dnnexp.config.errors import ConfigError, RunError
from dnnexp.config.schema import PrivacyConfig
from dnnexp.data.loader import InMemoryLoader
from dnnexp.tasks.privacy import PrivateTraining, default_delta
from tests.conftest import compose, metrics_rows, run_cli, train_here

PRIVATE = (
    "privacy=dp",
    "model.norm=none",
    "model.hidden=[32]",
    "data.batch_size=128",
    "trainer.progress_bar=false",
    "trainer.model_summary=false",
    "trainer.checkpoint_interval_s=0",
)


def _train(run_dir: Path, *overrides: str, resume: Path | None = None) -> dict:
    return train_here(run_dir, PRIVATE, *overrides, resume=resume)


def _knobs(**changes: object) -> DictConfig:
    """privacy=dp's knobs: the schema's defaults, with `changes`."""
    return OmegaConf.structured(PrivacyConfig(name="dp", **changes))


def _fresh_epsilon(ledger: dict, accountant: str) -> float:
    """What a new Opacus accountant says for the ledger's (σ, q, steps, δ)."""
    fresh = {"prv": PRVAccountant, "rdp": RDPAccountant}[accountant]()
    for _ in range(ledger["steps"]):
        fresh.step(noise_multiplier=ledger["noise_multiplier"], sample_rate=ledger["sample_rate"])
    return fresh.get_epsilon(ledger["delta"])


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_the_ledger_is_what_a_fresh_opacus_accountant_gives(tmp_path: Path, accountant: str):
    summary = _train(
        tmp_path / "run",
        f"privacy.accountant={accountant}",
        "privacy.epsilon=3",
        "trainer.max_epochs=3",
    )
    ledger = summary["privacy"]
    n = ledger["training_samples"]
    assert n == 1257 and ledger["sample_rate"] == pytest.approx(128 / n)
    assert ledger["steps"] == 3 * (n // 128)  # every optimizer step counted, no more
    assert ledger["delta"] == 1e-5 == default_delta(n)
    assert ledger["epsilon"] == pytest.approx(_fresh_epsilon(ledger, accountant), rel=1e-9)
    assert 2.9 < ledger["epsilon"] <= 3.0 + 0.01  # σ was found for the target over the run
    rows = metrics_rows(tmp_path / "run")
    spent = [float(r["privacy/epsilon"]) for r in rows]
    assert spent == sorted(spent) and spent[-1] == pytest.approx(ledger["epsilon"])
    card = (tmp_path / "run" / "model_card.md").read_text()
    assert f"{ledger['noise_multiplier']:.4g}" in card and "ε" in card
    if accountant == "prv":  # dnnexp eval of a private model: its test metrics again
        from dnnexp.evaluation.evaluate import evaluate

        best = tmp_path / "run" / "checkpoints" / "best.ckpt"
        evaluated = evaluate(best, tmp_path / "eval.json", [])
        for key, value in evaluated["metrics"].items():
            assert value == pytest.approx(summary["metrics"][key], rel=1e-6, abs=1e-9)


def test_a_resumed_private_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    """Rows (ε included), metrics and the ledger of 2 + 2 epochs equal those of 4; the Poisson
    batches and the noise continue as they would have."""
    knobs = ("privacy.epsilon=null", "privacy.noise_multiplier=1.1", "scheduler=none")
    straight = _train(tmp_path / "straight", *knobs, "trainer.max_epochs=4")
    _train(tmp_path / "stopped", *knobs, "trainer.max_epochs=2")
    resumed = _train(
        tmp_path / "stopped", *knobs, "trainer.max_epochs=4", resume=tmp_path / "stopped"
    )
    assert metrics_rows(tmp_path / "stopped") == metrics_rows(tmp_path / "straight")
    assert resumed["metrics"] == straight["metrics"]
    assert resumed["privacy"] == straight["privacy"]
    with pytest.raises(RunError, match=r"the checkpoint trained with noise multiplier 1\.1"):
        _train(
            tmp_path / "stopped",
            "privacy.epsilon=null",
            "privacy.noise_multiplier=2",
            "scheduler=none",
            "trainer.max_epochs=6",
            resume=tmp_path / "stopped",
        )


def test_each_samples_gradient_is_clipped_before_the_noise() -> None:
    """With σ = 0 the step's gradient is the sum of every sample's gradient clipped to C, over
    the expected batch size: an outlier sample moves it by at most C / (qN)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    reference = copy.deepcopy(model)  # per-sample gradients by plain autograd, one at a time
    private = PrivateTraining(_knobs(max_grad_norm=0.5, noise_multiplier=0.0))
    private.attach(model)
    private.plan(n=100, batch_size=10, steps=1)
    optimizer = private.wrap(torch.optim.SGD(model.parameters(), lr=1.0))
    x, y = torch.randn(6, 5), torch.randint(0, 3, (6,))
    x[0] *= 1000  # an outlier: its raw gradient is far above C
    expected = [torch.zeros_like(p) for p in model.parameters()]
    for i in range(len(y)):
        grads = torch.autograd.grad(
            nn.functional.cross_entropy(reference(x[i : i + 1]), y[i : i + 1]),
            list(reference.parameters()),
        )
        norm = torch.sqrt(sum((g * g).sum() for g in grads))
        if i == 0:
            assert norm > 10 * 0.5
        for e, g in zip(expected, grads, strict=True):
            e += g * min(1.0, 0.5 / (float(norm) + 1e-6))
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    assert optimizer.pre_step()  # clip, noise (none here), divide by qN
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, e / 10, rtol=1e-4, atol=1e-6)
    contributions = [
        torch.sqrt(sum((s[i] ** 2).sum() for s in (p.grad_sample for p in model.parameters())))
        for i in range(len(y))
    ]  # the raw per-sample gradients Opacus computed: only their clipped versions were summed
    assert float(contributions[0]) > 0.5


def test_poisson_batches_vary_repeat_per_epoch_and_resume() -> None:
    x, y = torch.arange(1000.0).view(-1, 1), torch.zeros(1000, dtype=torch.long)
    loader = InMemoryLoader(x, y, 50, shuffle=True, seed=3, poisson=True)
    epoch = [b[0].view(-1) for b in loader]
    sizes = [len(b) for b in epoch]
    assert len(sizes) == 20 and len(set(sizes)) > 3  # independent draws, not fixed batches
    assert 40 < sum(sizes) / len(sizes) < 60  # q N = 50 on average
    assert all(len(set(b.tolist())) == len(b) for b in epoch)  # a sample at most once per batch
    again = [b[0].view(-1) for b in loader]
    assert all(torch.equal(a, b) for a, b in zip(epoch, again, strict=True))
    loader.load_state_dict({"epoch": 0, "items_done": 7})
    resumed = [b[0].view(-1) for b in loader]
    assert all(torch.equal(a, b) for a, b in zip(epoch[7:], resumed, strict=True))
    loader.sampler.set_epoch(1)
    later = [b[0].view(-1) for b in loader]
    assert not all(torch.equal(a, b) for a, b in zip(epoch, later, strict=True))


def test_an_empty_poisson_batch_steps_with_noise_only() -> None:
    model = nn.Linear(4, 2)
    private = PrivateTraining(_knobs(noise_multiplier=1.0, accountant="rdp"))
    private.attach(model)
    private.plan(n=100, batch_size=10, steps=5)
    optimizer = private.wrap(torch.optim.SGD(model.parameters(), lr=1.0))
    before = model.weight.detach().clone()
    optimizer.zero_grad()
    private.empty_batch(model.parameters())
    optimizer.step()
    private.stepped()
    assert not torch.equal(model.weight.detach(), before)  # the noise moved it
    assert private.steps == 1 and private.epsilon() > 0


def test_delta_and_batch_size_must_fit_the_split() -> None:
    knobs = _knobs(epsilon=2.0, delta=0.01)
    with pytest.raises(RunError, match=r"privacy.delta=0.01 is not below 1/N = 0.01 \(N = 100"):
        PrivateTraining(knobs).plan(n=100, batch_size=10, steps=10)
    with pytest.raises(RunError, match=r"data.batch_size=100 is not below the training split's"):
        PrivateTraining(knobs).plan(n=100, batch_size=100, steps=10)
    assert default_delta(10**7) == pytest.approx(1e-8)


def test_the_ledger_line_says_when_batches_were_not_poisson() -> None:
    from dnnexp.tasks.privacy import privacy_line

    ledger = {"epsilon": 1.234, "delta": 1e-5, "accountant": "prv", "noise_multiplier": 2.0,
              "sample_rate": 0.1, "steps": 50, "max_grad_norm": 1.0, "poisson": True}  # fmt: skip
    assert privacy_line(ledger) == ("ε = 1.23 (δ = 1e-05, prv; σ = 2, q = 0.1, 50 steps, C = 1)")
    assert privacy_line({**ledger, "poisson": False}).endswith("not the Poisson ones ε assumes")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.norm=batch"], r"model.norm=batch mixes the samples of a batch.*model.norm=group"),
        (["reg.grad_clip=1"], r"reg.grad_clip=1.0 clips the batch's gradient.*max_grad_norm"),
        (["trainer.accumulate_grad_batches=2"], r"accumulate_grad_batches=2"),
        (["reg.l1=0.001"], r"reg.l1=0.001 .*reg.weight_decay"),
        (["reg=adversarial"], r"reg=adversarial"),
        (["distill.teacher=somewhere"], r"distill.teacher"),
        (["trainer.compile=true"], r"trainer.compile=true"),
        (["trainer.precision=bf16-mixed"], r"trainer.precision=bf16-mixed: train in 32-true"),
        (["trainer.strategy=ddp"], r"DDP is not supported"),
        (["trainer.devices=2"], r"DDP is not supported"),
        (["model=gru", "data=text", "data.path=x.csv"], r"model=gru has layers"),
        (["model=transformer"], r"model=transformer has layers"),
        (["trainer.overfit_batches=2"], r"trainer.overfit_batches"),
        (["lr_find.mode=apply"], r"learning-rate range test on the private data"),
        (["privacy.noise_multiplier=1"], r"exactly one of privacy.epsilon .* and"),
        (["privacy.epsilon=null"], r"exactly one of privacy.epsilon"),
        (["privacy.epsilon=0"], r"privacy.epsilon"),
    ],
)
def test_what_dp_sgd_cannot_train_is_refused_in_one_line(overrides: list[str], message: str):
    with pytest.raises(ConfigError, match=message) as err:
        compose("privacy=dp", "model.norm=none", *overrides)
    assert "\n" not in str(err.value) and str(err.value).startswith(("privacy", "data"))


def test_privacy_knobs_need_privacy_dp_and_inf_means_none() -> None:
    with pytest.raises(ConfigError, match=r"privacy.epsilon=2.0 applies to .*add privacy=dp"):
        compose("privacy.epsilon=2")
    cfg = compose("privacy=dp", "privacy.epsilon=inf")  # batch norm is fine: no DP-SGD
    from dnnexp.config.validate import private

    assert not private(cfg) and private(compose("privacy=dp", "model.norm=group"))


@pytest.mark.slow
def test_a_privacy_sweep_reports_the_metric_against_epsilon(tmp_path: Path) -> None:
    """Through the CLI: DP runs and a non-private one, the report's ε plot and its line that
    comparing private runs spends privacy no single ε accounts for."""
    sweep = tmp_path / "sweep"
    done = run_cli(
        "train", "-m", "experiment=private_mlp", "sweep=privacy", "privacy.epsilon=1,inf",
        "seed=0,1", "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ε = 1" in done.stdout or "ε = 0.9" in done.stdout
    ledgers = [json.loads(p.read_text()).get("privacy") for p in sweep.glob("*/summary.json")]
    assert sum(ledger is not None for ledger in ledgers) == 2  # ε = inf trains without DP-SGD
    shown = run_cli("report", str(sweep), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert "spends privacy that no single run's ε accounts for" in text
    assert (sweep / "test_acc_vs_epsilon.png").stat().st_size > 10_000
    assert "## Privacy" in (sweep / "report.md").read_text()
    assert math.isfinite(
        json.loads((sweep / "0" / "summary.json").read_text())["privacy"]["epsilon"]
    )


def test_a_search_counts_its_private_trials(tmp_path: Path) -> None:
    from dnnexp.config.overrides import privacy_warning
    from dnnexp.search.summary import private_runs

    for i, ledger in enumerate([{"epsilon": 2.0}, None, {"epsilon": 1.0}]):
        (tmp_path / str(i)).mkdir()
        summary = {"status": "completed", **({"privacy": ledger} if ledger else {})}
        (tmp_path / str(i) / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "summary.json").write_text("{not json")  # a run being written
    assert private_runs(tmp_path) == 2
    assert "these 2 private runs" in privacy_warning(2)


def test_pruning_trains_privately(tmp_path: Path) -> None:
    """Pruning's masks hook the optimizer DP-SGD wraps: the pruned weights stay zero."""
    summary = _train(tmp_path / "run", "prune.amount=0.5", "trainer.max_epochs=2")
    assert summary["pruning"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert summary["privacy"]["steps"] == 2 * (1257 // 128)


def test_shuffled_batches_are_recorded_as_such(tmp_path: Path) -> None:
    summary = _train(tmp_path / "run", "privacy.poisson=false", "trainer.max_epochs=1")
    assert summary["privacy"]["poisson"] is False and summary["privacy"]["steps"] == 1257 // 128


def test_steps_per_call_changes_nothing_but_speed_under_dp(tmp_path: Path) -> None:
    """Poisson batches of 16 steps in one Lightning call train exactly as one per call: the
    same batches, noise, rows and ε."""
    one = _train(tmp_path / "one", "trainer.steps_per_call=1", "trainer.max_epochs=2")
    many = _train(tmp_path / "many", "trainer.steps_per_call=16", "trainer.max_epochs=2")
    assert metrics_rows(tmp_path / "one") == metrics_rows(tmp_path / "many")
    assert one["metrics"] == many["metrics"] and one["privacy"] == many["privacy"]
