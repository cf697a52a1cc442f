"""Magnitude pruning: the masks (global and per layer), the cubic schedule, the mask held after
every optimizer step, gradual pruning's best checkpoint and exact resume, `dnnexp prune` on the
default MLP (accuracy within a point at 50%, the source unchanged, `dnnexp eval` of the result),
the accuracy-vs-sparsity plot and the one-line refusals."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch import nn

from dnnexp.config.errors import ConfigError
from dnnexp.models import build_model
from dnnexp.training.weight_pruning import (
    MagnitudePruning,
    compute_masks,
    prunable_weights,
    target_sparsity,
)
from tests.conftest import compose, metrics_rows, run_cli, summary
from tests.test_report import make_run


# ------------------------------------------------------------------------------- the masks
@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ("cnn", {"Conv2d": ["weight"], "Linear": ["weight"]}),
        ("lstm", {"LSTM": ["weight_hh_l0", "weight_ih_l0"], "Linear": ["weight"]}),
    ],
)
def test_linear_conv_and_recurrent_weights_are_pruned_never_biases_or_norms(
    family: str, expected: dict
) -> None:
    model = build_model(compose(f"model={family}").model, (1, 8, 8), 10, 0.0)
    modules = dict(model.named_modules())
    found: dict[str, set] = {}
    for name, param in prunable_weights(model):
        owner, _, leaf = name.rpartition(".")
        found.setdefault(type(modules[owner]).__name__, set()).add(leaf)
        assert param is modules[owner]._parameters[leaf]
    assert {k: sorted(v) for k, v in found.items()} == expected


def test_global_scope_shares_one_threshold_and_layer_scope_prunes_each_alike() -> None:
    torch.manual_seed(0)
    small, large = torch.randn(100) * 0.01, torch.randn(300)
    kept = compute_masks([small, large], 0.5, "global")
    assert sum(int((m == 0).sum()) for m in kept) == 200  # half of all 400, exactly
    assert int((kept[0] == 0).sum()) == 100  # the small layer goes first
    weights, masks = torch.cat([small, large]), torch.cat(kept).bool()
    assert weights[~masks].abs().max() <= weights[masks].abs().min()  # one threshold
    per_layer = compute_masks([small, large], 0.5, "layer")
    assert [int((m == 0).sum()) for m in per_layer] == [50, 150]
    # a mask pruned before stays pruned, whatever the weights now
    again = compute_masks([torch.ones(100), torch.ones(300)], 0.25, "layer", per_layer)
    assert all(bool((a[m == 0] == 0).all()) for a, m in zip(again, per_layer, strict=True))


def test_the_cubic_schedule_rises_from_zero_to_the_amount_at_the_end_epoch() -> None:
    values = [target_sparsity(0.8, e, 4) for e in range(7)]
    assert values[0] == 0.0 and values[4:] == [0.8, 0.8, 0.8]
    assert values[1] == pytest.approx(0.8 * (1 - 0.75**3))
    assert all(a < b for a, b in zip(values[:4], values[1:5], strict=True))


def _fit_start(callback: MagnitudePruning, model: nn.Module, optimizer, epoch: int = 0, cbs=()):
    trainer = SimpleNamespace(
        optimizers=[optimizer], current_epoch=epoch, callbacks=list(cbs), sanity_checking=False
    )
    module = SimpleNamespace(model=model)
    callback.on_fit_start(trainer, module)
    callback.on_train_start(trainer, module)
    return trainer, module


def test_the_mask_holds_after_every_optimizer_step_and_pruned_weights_get_no_gradient() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    callback = MagnitudePruning(0.6, "global", "once", 0)
    _fit_start(callback, model, optimizer)
    weights = [model[0].weight, model[3].weight]
    zeros = [w == 0 for w in weights]
    assert sum(int(z.sum()) for z in zeros) == round(0.6 * (128 + 48))
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    for _ in range(5):  # as in a Lightning call of several steps: no callback hook in between
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        assert all(bool((w.grad[z] == 0).all()) for w, z in zip(weights, zeros, strict=True))
        optimizer.step()
        assert all(torch.equal(w == 0, z) for w, z in zip(weights, zeros, strict=True))
    assert not (model[0].bias == 0).any() and not (model[1].weight == 0).any()
    assert set(model.state_dict()) == {  # plain names: no weight_orig / weight_mask
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
        "1.num_batches_tracked", "3.weight", "3.bias",
    }  # fmt: skip
    callback.on_fit_end(None, None)  # hooks gone: the model trains as any other
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    assert (model[0].weight == 0).sum() < zeros[0].sum() / 2
    # a resumed run takes its mask back from the zeros: the same entries
    resumed = MagnitudePruning(0.6, "global", "once", 0)
    again = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 3))
    with torch.no_grad():
        for w, z in zip([again[0].weight, again[1].weight], zeros, strict=True):
            w.uniform_(0.1, 1.0).masked_fill_(z, 0)
    _fit_start(resumed, again, torch.optim.SGD(again.parameters(), lr=0.1))
    assert all(torch.equal(m == 0, z) for m, z in zip(resumed._masks, zeros, strict=True))


def test_gradual_pruning_ramps_up_and_counts_the_best_from_the_end_epoch(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(20, 50))
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="val/loss")
    checkpoint.best_k_models, checkpoint.best_model_score = {"x": torch.tensor(0.1)}, 0.1
    stopping = EarlyStopping(monitor="val/loss", patience=1)
    stopping.wait_count, stopping.best_score = 1, torch.tensor(0.1)
    callback = MagnitudePruning(0.5, "layer", "gradual", 3)
    trainer, module = _fit_start(
        callback, model, torch.optim.SGD(model.parameters(), lr=0.1), cbs=[checkpoint, stopping]
    )
    seen = []
    for epoch in range(5):
        trainer.current_epoch = epoch
        callback.on_train_epoch_start(trainer, module)
        seen.append(float((model[0].weight == 0).float().mean()))
        if epoch < 3:
            callback.on_validation_end(trainer, module)  # the ramp: early stopping restarts
            assert stopping.wait_count == 0 and stopping.best_score == torch.inf
            stopping.wait_count, stopping.best_score = 1, torch.tensor(0.1)
            assert checkpoint.best_k_models  # kept during the ramp
    assert seen == [0.0, pytest.approx(0.5 * (1 - (2 / 3) ** 3), abs=1e-3),
                    pytest.approx(0.5 * (1 - (1 / 3) ** 3), abs=1e-3), 0.5, 0.5]  # fmt: skip
    # at the end epoch the best checkpoint and early stopping start afresh, then count
    assert checkpoint.best_k_models == {} and checkpoint.best_model_score is None
    assert stopping.wait_count == 0 and stopping.best_score == torch.inf
    stopping.wait_count = 1
    callback.on_validation_end(trainer, module)  # epoch 4: not the ramp
    assert stopping.wait_count == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["prune.amount=1"], "prune.amount=1.0 is out of range: must be less than 1"),
        (["prune.scope=row"], "prune.scope='row' is not allowed; choose one of: global, layer"),
        (["prune.schedule=x"], "prune.schedule='x' is not allowed; choose one of: once, gradual"),
        (["prune.end_epoch=0"], "prune.end_epoch=0 is out of range: must be greater than 0"),
    ],
)
def test_a_bad_prune_knob_is_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        compose(*overrides)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["prune.end_epoch=3"], "prune.end_epoch=3 ends the ramp of prune.schedule=gradual"),
        (
            ["prune.amount=0.5", "prune.schedule=gradual", "trainer.max_epochs=1"],
            "it needs trainer.max_epochs >= 2",
        ),
        (
            ["prune.amount=0.5", "prune.schedule=gradual", "prune.end_epoch=30"],
            "at most trainer.max_epochs - 1 = 29",
        ),
    ],
)
def test_prune_knobs_that_do_not_fit_together_are_refused(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        compose(*overrides)  # at validation, before torch
    assert "\n" not in str(err.value)


# ----------------------------------------------------- gradual pruning in a run, exact resume
GRADUAL = (
    "data=synthetic", "data.num_samples=300", "data.batch_size=16",  # 13 batches per epoch
    "trainer.progress_bar=false", "trainer.model_summary=false",
    "trainer.checkpoint_interval_s=0", "trainer.max_epochs=3", "trainer.val_check_interval=0.5",
    "prune.amount=0.6", "prune.schedule=gradual",
)  # fmt: skip


def test_gradual_pruning_tests_a_fully_sparse_model_and_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted after a validation in the middle of the ramp (epoch 1 of a ramp that ends at
    epoch 2) and resumed: the same rows, weights and metrics as the run that went through."""
    from dnnexp.tasks.module import TrainingModule
    from dnnexp.training.run import train

    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    straight.mkdir(), stopped.mkdir()
    through = train(compose(*GRADUAL), run_dir=straight, overrides=[])
    entry = through["pruning"]
    assert entry["sparsity"] == pytest.approx(0.6, abs=1e-5) and entry["end_epoch"] == 2
    assert entry["params"] - entry["nonzero_params"] >= 0.6 * entry["pruned_weights"] - 1
    assert entry["checkpoint_gzip_bytes"] < entry["checkpoint_bytes"]
    epochs = [int(r["epoch"]) for r in metrics_rows(straight)]
    assert epochs == [e for e in range(3) for _ in range(3)]  # at 6 and 12 batches, and the end
    assert through["best_epoch"] == 2  # the best of those at the full sparsity

    def interrupt(module: TrainingModule, batch: object, batch_idx: int) -> None:
        if module.global_step >= 19:  # after the first validation of epoch 1
            raise KeyboardInterrupt

    with monkeypatch.context() as patch, pytest.raises(SystemExit):
        patch.setattr(TrainingModule, "on_train_batch_start", interrupt, raising=False)
        train(compose(*GRADUAL), run_dir=stopped, overrides=[])
    assert len(metrics_rows(stopped)) == 4
    resumed = train(compose(*GRADUAL, f"resume={stopped}"), run_dir=stopped, overrides=[])
    assert metrics_rows(stopped) == metrics_rows(straight)
    assert resumed["metrics"] == through["metrics"]
    assert resumed["pruning"]["sparsity"] == entry["sparsity"]
    for name in ("best.ckpt", "last.ckpt"):
        a, b = (torch.load(d / "checkpoints" / name, weights_only=True)["state_dict"]
                for d in (straight, stopped))  # fmt: skip
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


# --------------------------------------------------------------------- dnnexp prune, end to end
def _files(run_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_prune_half_of_the_default_mlp_keeps_its_accuracy_in_a_new_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The issue's check: the default MLP on digits, pruned 50% by `dnnexp prune` and
    fine-tuned (10 epochs by default), tests within 1 point of the source."""
    quiet = ("trainer.progress_bar=false", "trainer.model_summary=false")
    source = run_cli("train", "hydra.run.dir=src", *quiet, cwd=tmp_path)
    assert source.returncode == 0, source.stderr[-2000:]
    src = tmp_path / "src"
    before = _files(src)
    pruned = run_cli("prune", "src", "amount=0.5", "hydra.run.dir=pruned", cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr[-2000:]
    assert _files(src) == before  # the source run is only read
    run = summary(tmp_path / "pruned")
    entry, acc = run["pruning"], run["metrics"]["test/acc"]
    assert entry["before"]["metrics"]["test/acc"] == summary(src)["metrics"]["test/acc"]
    assert abs(acc - entry["before"]["metrics"]["test/acc"]) <= 0.01
    assert entry["sparsity"] == 0.5 and entry["before"]["sparsity"] == 0.0
    assert entry["checkpoint_gzip_bytes"] < 0.75 * entry["before"]["checkpoint_gzip_bytes"]
    assert run["epochs"] == 10 and run["overrides"][-5:] == [
        f"init_from={src.resolve()}", "prune.amount=0.5", "prune.scope=global",
        "prune.schedule=once", "trainer.max_epochs=10",
    ]  # fmt: skip
    out = " ".join(pruned.stdout.split())
    assert "pruned: sparsity 0.500 of 84,480 weights in 3 layers (amount 0.5, global" in out
    ckpt = torch.load(tmp_path / "pruned/checkpoints/best.ckpt", weights_only=True)
    source_ckpt = torch.load(src / "checkpoints/best.ckpt", weights_only=True)
    assert ckpt["state_dict"].keys() == source_ckpt["state_dict"].keys()  # plain weights
    # dnnexp eval of the pruned best.ckpt: a plain model, the same test metrics
    from dnnexp.cli import main

    assert main(["eval", f"ckpt={tmp_path / 'pruned/checkpoints/best.ckpt'}"]) == 0
    evaluated = json.loads((tmp_path / "pruned/eval/best.json").read_text())
    assert evaluated["metrics"]["test/acc"] == acc
    capsys.readouterr()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere", "amount=0.5"], "error: nowhere: no such run dir"),
        (["plain", "amount=0.5"], "error: plain: not a dnnexp run dir (no .hydra/overrides.yaml"),
        (["run"], "error: amount= is missing: dnnexp prune RUN_DIR amount=0.5"),
        (["run", "amount=1.5"], "error: amount=1.5 is out of range: must be less than 1"),
        (["run", "amount=0"], "error: amount=0.0 is out of range: must be greater than 0"),
        (["run", "amount=half"], "error: amount=half: expected a number between 0 and 1"),
        (["run", "amount=0.5", "scope=row"], "error: scope='row' is not allowed; choose one of"),
        (["run", "amount=0.5", "epochs=0"], "error: epochs=0: expected a whole number >= 1"),
        (["run", "amount=0.5", "-m"], "error: -m: dnnexp prune takes RUN_DIR and key=value"),
    ],
)
def test_bad_prune_input_is_one_line_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, args: list[str], message: str
) -> None:
    from dnnexp.cli import main

    (tmp_path / "plain").mkdir()
    make_run(tmp_path / "run", ["seed=0"])
    (tmp_path / "run/checkpoints").mkdir()
    (tmp_path / "run/checkpoints/best.ckpt").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    listing = sorted(tmp_path.rglob("*"))
    assert main(["prune", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert sorted(tmp_path.rglob("*")) == listing


def test_prune_reruns_the_source_overrides_with_its_own_and_the_given_ones(
    tmp_path: Path,
) -> None:
    from dnnexp.commands.prune import train_args

    run = make_run(
        tmp_path / "run",
        ["seed=3", "model.hidden=[64]", "init_from=old", "prune.amount=0.2", "optimizer.lr=0.01",
         "trainer.max_epochs=12", "freeze=backbone"],
    )  # fmt: skip
    (run / ".hydra/config.yaml").write_text("trainer:\n  max_epochs: 12\n")
    (run / "checkpoints").mkdir()
    (run / "checkpoints/best.ckpt").write_bytes(b"")
    argv = train_args([str(run), "amount=0.9", "scope=layer", "optimizer.lr=1e-4"])
    assert argv == [
        "seed=3", "model.hidden=[64]", f"init_from={run.resolve()}", "prune.amount=0.9",
        "prune.scope=layer", "prune.schedule=once", "trainer.max_epochs=4", "optimizer.lr=1e-4",
    ]  # fmt: skip
    assert "trainer.max_epochs=2" in train_args([str(run), "amount=0.5", "epochs=2"])


# ----------------------------------------------------------------------- report: the curve
def test_a_sweep_over_prune_amount_gets_an_accuracy_vs_sparsity_plot(tmp_path: Path) -> None:
    from dnnexp.commands.report import main

    sweep = tmp_path / "sweep"
    job = 0
    for amount, acc in ((0.25, 0.99), (0.5, 0.985), (0.9, 0.94)):
        for seed in (0, 1):
            pruning = {"sparsity": amount, "before": {"run": "src", "metrics": {"test/acc": 0.99}}}
            make_run(sweep / str(job), ["init_from=src", f"prune.amount={amount}", f"seed={seed}"],
                     acc=acc + 0.002 * seed, extra={"pruning": pruning})  # fmt: skip
            job += 1
    assert main([str(sweep)]) == 0
    png = sweep / "test_acc_vs_sparsity.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![test_acc_vs_sparsity](test_acc_vs_sparsity.png)" in (sweep / "report.md").read_text()
    other = tmp_path / "other"  # variants that do not differ in prune.amount: no such plot
    for job, reg in enumerate(("none", "dropout")):
        make_run(other / str(job), ["prune.amount=0.5", f"reg={reg}", "seed=0"])
    assert main([str(other)]) == 0
    assert not (other / "test_acc_vs_sparsity.png").exists()
