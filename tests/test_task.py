"""The training task: metrics, regularizers in the loss, optimizer groups, one smoke epoch per model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from dnnexp.config.schema import MODEL_SCHEMAS
from dnnexp.data.spec import DataSpec
from dnnexp.tasks.metrics import ClassificationStats
from dnnexp.tasks.module import TrainingModule
from dnnexp.tasks.optim import param_groups
from tests.conftest import compose, metrics_rows


def make_task(*overrides: str) -> TrainingModule:
    cfg = compose(*overrides)
    return TrainingModule(OmegaConf.to_container(cfg, resolve=True), DataSpec([1, 8, 8], 10))


def test_epoch_stats_match_scikit_learn() -> None:
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (300,), generator=g)
    logits = torch.randn(300, 5, generator=g) + 2 * F.one_hot(y, 5)
    stats = ClassificationStats(5)
    for i in range(0, 300, 64):
        stats.update(
            logits[i : i + 64], y[i : i + 64], F.cross_entropy(logits[i : i + 64], y[i : i + 64])
        )
    got = stats.compute()
    pred = logits.argmax(1)
    p, r, f, _ = precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
    assert got["acc"] == pytest.approx(accuracy_score(y, pred))
    assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p, r, f))
    assert got["loss"] == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-6)


def test_weight_decay_only_on_weights() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    decay, no_decay = param_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert {p.ndim for p in decay["params"]} == {2} and len(decay["params"]) == 2
    assert len(no_decay["params"]) == 4  # two biases, the norm's weight and bias


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_optimizer_kernels_agree_and_auto_picks_the_fastest(name: str) -> None:
    """fused / foreach / for_loop take the same steps up to float rounding; auto is fused where
    torch has it (sgd, adam, adamw), else foreach."""
    from dnnexp.tasks.optim import build_optimizer

    weights = {}
    for implementation in ("for_loop", "foreach", "fused", "auto"):
        if implementation == "fused" and name == "rmsprop":
            continue
        cfg = compose(f"optimizer={name}", f"optimizer.implementation={implementation}")
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
        optimizer = build_optimizer(cfg.optimizer, param_groups(model, 1e-2))
        fused = optimizer.defaults.get("fused")
        if implementation == "auto":
            assert bool(fused) == (name != "rmsprop") and optimizer.defaults["foreach"] == (
                None if fused else True
            )
        x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
        initial = torch.cat([p.detach().flatten() for p in model.parameters()])
        for _ in range(5):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        weights[implementation] = torch.cat([p.detach().flatten() for p in model.parameters()])
        assert not torch.allclose(weights[implementation], initial)  # it did train
    reference = weights.pop("for_loop")
    for implementation, w in weights.items():
        assert torch.allclose(w, reference, atol=1e-5), implementation


def test_dropout_reaches_the_model() -> None:
    ps = {m.p for m in make_task("reg=dropout").model.modules() if isinstance(m, nn.Dropout)}
    assert ps == {0.2}


def _loss(task: TrainingModule) -> torch.Tensor:
    torch.manual_seed(0)
    batch = (torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,)))
    task.model.eval()  # no batch-norm statistics drift between the calls
    return task._loss(*batch).detach()  # the loss one optimizer step minimizes


def test_l1_term_is_added_to_the_loss() -> None:
    plain, l1 = make_task(), make_task("reg=l1", "reg.l1=0.01")
    l1.model.load_state_dict(plain.model.state_dict())
    weights = sum(p.abs().sum() for p in plain.model.parameters() if p.ndim > 1)
    assert float(_loss(l1) - _loss(plain)) == pytest.approx(0.01 * float(weights), rel=1e-5)


def test_label_smoothing_is_in_the_loss_not_in_the_metric() -> None:
    plain, smooth = make_task(), make_task("reg=label_smoothing")
    smooth.model.load_state_dict(plain.model.state_dict())
    assert float(_loss(smooth)) != pytest.approx(float(_loss(plain)))
    assert smooth.stats["train"].compute()["loss"] == pytest.approx(
        plain.stats["train"].compute()["loss"]
    )


def test_augment_moves_images_but_keeps_shape() -> None:
    from dnnexp.data.augment import augment_images

    torch.manual_seed(0)
    x = torch.randn(8, 1, 8, 8)
    out = augment_images(x, 1.0)
    assert out.shape == x.shape and not torch.allclose(out, x)
    assert torch.allclose(augment_images(x, 0.0), x, atol=1e-5)


@pytest.mark.parametrize("model", sorted(MODEL_SCHEMAS))
def test_each_model_trains_a_smoke_epoch(model: str, tmp_path: Path) -> None:
    from dnnexp.training.run import train

    data, headline = [], "test/acc"
    if MODEL_SCHEMAS[model].decoder:  # an encoder-decoder: pairs of texts
        from tests.test_seq2seq import PAIRS, write_pairs

        write_pairs(tmp_path / "pairs.tsv", 60)
        data, headline = [*PAIRS, f"data.path={tmp_path / 'pairs.tsv'}"], "test/ter"
    elif MODEL_SCHEMAS[model].reads == "tokens":  # a family of token ids only: a text file
        from tests.test_text import write_texts

        write_texts(tmp_path / "texts.csv", 60)
        data = ["data=text", f"data.path={tmp_path / 'texts.csv'}"]
    overrides = [f"model={model}", *data]
    cfg = compose(*overrides, "trainer=smoke", "trainer.progress_bar=false", "logger=none")
    (tmp_path / "run").mkdir()
    result = train(cfg, run_dir=tmp_path / "run", overrides=overrides)
    assert result["status"] == "completed" and result["epochs"] == 1
    top = 1.0 if headline == "test/acc" else float("inf")  # an error rate can pass 1
    assert 0.0 <= result["metrics"][headline] <= top
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()


def test_a_run_flushes_denormals_and_gives_the_caller_its_subnormals_back(tmp_path: Path) -> None:
    import torch

    from dnnexp.training.run import _flushing_denormals, train

    seen = []
    real = torch.set_flush_denormal

    def spy(mode: bool) -> bool:
        seen.append(mode)
        return real(mode)

    cfg = compose("trainer=smoke", "trainer.progress_bar=false", "logger=none")
    (tmp_path / "run").mkdir()
    torch.set_flush_denormal = spy
    try:
        train(cfg, run_dir=tmp_path / "run", overrides=[])
    finally:
        torch.set_flush_denormal = real
    assert seen == [True, False]  # on for the run, then the caller's mode again
    tiny = 5e-324  # the smallest double: a subnormal
    assert not _flushing_denormals() and tiny * 1.5 != 0.0


def _train_rows(run_dir: Path, *overrides: str) -> tuple[dict, list[dict]]:
    from dnnexp.training.run import train

    run_dir.mkdir()
    cfg = compose(
        "data=synthetic",
        "data.batch_size=16",
        "trainer.max_epochs=3",
        "trainer.progress_bar=false",
        "trainer.model_summary=false",
        *overrides,
    )
    summary = train(cfg, run_dir=run_dir, overrides=list(overrides))
    return summary, metrics_rows(run_dir)


@pytest.mark.parametrize(
    "scheduler", ["cosine", "onecycle", "plateau", "step scheduler.step_size=1 scheduler.gamma=0.5"]
)
def test_steps_per_call_changes_nothing_but_speed(tmp_path: Path, scheduler: str) -> None:
    """Several optimizer steps per Lightning call: the same steps, schedules, clipping and
    random draws as one step per call, so the same numbers bit for bit."""
    name, *knobs = scheduler.split()
    common = (f"scheduler={name}", *knobs, "reg=[dropout,grad_clip,augment]", "reg.grad_clip=0.5")
    one, rows_one = _train_rows(tmp_path / "one", *common, "trainer.steps_per_call=1")
    many, rows_many = _train_rows(tmp_path / "many", *common, "trainer.steps_per_call=7")
    assert rows_one == rows_many and one["metrics"] == many["metrics"]
    assert len({r["lr"] for r in rows_one}) == (1 if name == "plateau" else 3)  # schedules ran


def test_plain_optimizer_step_matches_lightnings_wrapper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On one fp32 device the task steps the optimizer itself: the same steps, clipping and
    step count (checkpoints, schedules) as through Lightning's optimizer wrapper (the private
    hooks it calls are dnnexp/compat.py's)."""
    paths = []
    original = TrainingModule.on_train_start

    def recording(self: TrainingModule) -> None:
        original(self)
        paths.append(self._skip_step_wrapper)

    monkeypatch.setattr(TrainingModule, "on_train_start", recording)
    common = ("scheduler=onecycle", "reg=[dropout,grad_clip]", "reg.grad_clip=0.5")
    direct, rows_direct = _train_rows(tmp_path / "direct", *common)

    def through_lightning(self: TrainingModule) -> None:
        original(self)
        self._skip_step_wrapper = False
        paths.append(self._skip_step_wrapper)

    monkeypatch.setattr(TrainingModule, "on_train_start", through_lightning)
    wrapped, rows_wrapped = _train_rows(tmp_path / "wrapped", *common)
    assert paths == [True, False]
    assert rows_direct == rows_wrapped and direct["metrics"] == wrapped["metrics"]
    steps = [
        torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
        for run in (tmp_path / "direct", tmp_path / "wrapped")
    ]
    assert steps[0] == steps[1] > 0


def test_limit_train_batches_counts_batches_not_calls(tmp_path: Path) -> None:
    from dnnexp.data.datamodule import ArrayDataModule

    cfg = compose("data=synthetic", "data.batch_size=16", "trainer.steps_per_call=3")
    for limit, batches in ((5, 5), (0.5, None), (1.0, None)):
        cfg.trainer.limit_train_batches = limit
        data = ArrayDataModule.for_run(cfg)
        data.setup()
        loader = data.train_dataloader()
        full = len(data.splits["train"][1]) // 16
        expected = batches or max(1, int(full * limit))
        assert loader.num_batches == expected and len(loader) == -(-expected // 3)
        items = list(loader)
        assert sum(len(y) for _, y in items) == expected * 16


@pytest.mark.parametrize(
    "scheduler", ["step scheduler.step_size=1", "plateau scheduler.patience=0"]
)
def test_epoch_schedules_resume_exactly(tmp_path: Path, scheduler: str) -> None:
    """Per-epoch schedules are stepped by the task: a run stopped after 2 epochs and resumed
    to 4 follows the same learning rates and numbers as a run of 4 epochs."""
    from dnnexp.training.run import train

    name, *knobs = scheduler.split()
    common = (f"scheduler={name}", *knobs, "trainer.checkpoint_interval_s=0")
    straight, rows_straight = _train_rows(tmp_path / "straight", *common, "trainer.max_epochs=4")
    _train_rows(tmp_path / "stopped", *common, "trainer.max_epochs=2")
    cfg = compose(
        "data=synthetic",
        "data.batch_size=16",
        "trainer.progress_bar=false",
        "trainer.model_summary=false",
        *common,
        "trainer.max_epochs=4",
        f"resume={tmp_path / 'stopped'}",
    )
    resumed = train(cfg, run_dir=tmp_path / "stopped", overrides=[])
    rows = metrics_rows(tmp_path / "stopped")
    assert rows == rows_straight and resumed["metrics"] == straight["metrics"]
    if name == "step":
        assert len({r["lr"] for r in rows}) == 4  # the schedule moved each epoch
