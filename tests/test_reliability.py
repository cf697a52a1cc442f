"""Kill and resume, interrupts, reproducibility, numerical faults, atomic checkpoint writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dnnexp.tasks.module import TrainingModule
from tests.conftest import compose, metrics_rows, run_cli, run_here

ARGS = [
    "train",
    "data.batch_size=4",
    "trainer.max_epochs=3",
    "trainer.progress_bar=false",
    "trainer.model_summary=false",
    "reg=[dropout,augment]",
    "trainer.checkpoint_interval_s=0",  # a checkpoint after every epoch: kill after the first
]


def _start(cwd: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "dnnexp", *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.005)


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    reference = run_cli(*ARGS, "hydra.run.dir=reference", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr

    proc = _start(tmp_path, *ARGS, "hydra.run.dir=killed")
    _wait_for(tmp_path / "killed" / "checkpoints" / "last.ckpt", proc)  # epoch 0 is done
    time.sleep(0.1)  # well inside epoch 1 (about 300 steps)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert _summary(tmp_path / "killed")["status"] == "running"  # what a SIGKILL leaves
    assert len(metrics_rows(tmp_path / "killed")) < 3

    resumed = run_cli("train", "resume=killed", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    after, before = _summary(tmp_path / "killed"), _summary(tmp_path / "reference")
    assert after["status"] == "completed" and after["resumed"]
    assert after["metrics"] == before["metrics"]  # exactly, not approximately
    assert metrics_rows(tmp_path / "killed") == metrics_rows(tmp_path / "reference")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_keeps_the_checkpoints_and_says_how_to_resume(
    tmp_path: Path, sig: int
) -> None:
    proc = _start(tmp_path, *ARGS, "trainer.max_epochs=50", "hydra.run.dir=run")
    _wait_for(tmp_path / "run" / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    summary = _summary(tmp_path / "run")
    name = signal.Signals(sig).name
    assert summary["status"] == "interrupted" and summary["error"] == f"interrupted by {name}"
    assert (
        summary["signal"] == name and summary["resume"] == f"dnnexp train resume={tmp_path / 'run'}"
    )
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert summary["epochs"] == last["epoch"] + 1 >= 1  # what the checkpoint holds
    assert {"val/acc", "val/loss", "train/acc"} <= set(summary["metrics"])  # its last validation
    assert f"dnnexp train resume={tmp_path / 'run'}" in out + err
    torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)  # intact

    if sig == signal.SIGTERM:  # and the run goes on from there
        resumed = run_cli("train", "resume=run", "trainer.max_epochs=3", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert _summary(tmp_path / "run")["status"] == "completed"


@pytest.mark.slow
def test_checkpoints_held_in_memory_are_written_when_the_run_is_interrupted(
    tmp_path: Path,
) -> None:
    """With the default rate limit no checkpoint reaches the disk during a short run; a SIGTERM
    still leaves last.ckpt at an epoch no more than HOLD_INTERVAL_S older than the signal, and
    the run resumes from it."""
    from dnnexp.training.checkpoint import BestAndLastCheckpoint

    args = [a for a in ARGS if not a.startswith("trainer.checkpoint_interval_s")]
    proc = _start(tmp_path, *args, "trainer.max_epochs=50", "hydra.run.dir=run")
    csv_file = tmp_path / "run" / "metrics.csv"
    _wait_for(csv_file, proc)
    while len(metrics_rows(tmp_path / "run")) < 1:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    epoch_0_ended = time.monotonic()  # its state was taken
    # the first epoch that ends HOLD_INTERVAL_S after epoch 0 has its state taken too
    while time.monotonic() < epoch_0_ended + BestAndLastCheckpoint.HOLD_INTERVAL_S + 0.2:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    rows = len(metrics_rows(tmp_path / "run"))
    while len(metrics_rows(tmp_path / "run")) <= rows:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    time.sleep(0.1)
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()  # held in memory
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    history = TrainingModule.history_of(last)
    assert last["epoch"] >= 1 and len(history) == last["epoch"] + 1
    assert "optimizer_states" in last and "callbacks" in last  # all a resume needs
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=True)
    assert "optimizer_states" not in best and "state_dict" in best  # weights only

    resumed = run_cli(
        "train", "resume=run", f"trainer.max_epochs={last['epoch'] + 2}", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr
    assert _summary(tmp_path / "run")["epochs"] == last["epoch"] + 2


def test_resume_refuses_what_it_cannot_resume(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = run_here("train", "resume=empty", cwd=tmp_path)
    assert proc.returncode == 2 and "not a dnnexp run dir" in proc.stderr
    (tmp_path / "early" / ".hydra").mkdir(parents=True)
    (tmp_path / "early" / ".hydra" / "overrides.yaml").write_text("[]\n")
    proc = run_here("train", "resume=early", cwd=tmp_path)
    assert proc.returncode == 2 and "no checkpoints/last.ckpt" in proc.stderr


def _train(tmp: Path, *overrides: str) -> dict:
    from dnnexp.training.run import train

    cfg = compose(
        "data=synthetic",
        "trainer.max_epochs=3",
        "trainer.progress_bar=false",
        "trainer.model_summary=false",
        "reg=[dropout,augment]",
        *overrides,
    )
    return train(cfg, run_dir=tmp, overrides=list(overrides))


def test_resume_with_fewer_epochs_than_trained_is_one_line(tmp_path: Path) -> None:
    from dnnexp.config.errors import RunError
    from dnnexp.training.run import train

    _train(tmp_path, "trainer.max_epochs=2")
    before = (tmp_path / "summary.json").read_text()
    cfg = compose("data=synthetic", "trainer.max_epochs=1", f"resume={tmp_path}")
    with pytest.raises(
        RunError, match="the run has trained 2 epochs, more than trainer.max_epochs=1"
    ):
        train(cfg, run_dir=tmp_path, overrides=[])
    assert (tmp_path / "summary.json").read_text() == before  # the run is left as it was


def test_same_seed_same_metrics_different_seed_different(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for run, seed in ((a, 0), (b, 0), (c, 1)):
        run.mkdir()
        _train(run, f"seed={seed}")
    assert metrics_rows(a) == metrics_rows(b) and _summary(a)["metrics"] == _summary(b)["metrics"]
    assert metrics_rows(a) != metrics_rows(c)
    assert (
        _summary(a)["epochs"] == len(metrics_rows(a)) == 3
    )  # all epochs, not those up to the best


def test_summary_records_versions_and_code(tmp_path: Path) -> None:
    summary = _train(tmp_path, "trainer.max_epochs=1")
    assert summary["versions"]["torch"] == torch.__version__
    assert set(summary["versions"]) == {"python", "torch", "lightning"}
    code = summary["code"]
    assert code is None or (len(code["git_commit"]) == 40 and isinstance(code["dirty"], bool))


def test_a_nan_loss_stops_the_run_at_its_step(tmp_path: Path) -> None:
    with pytest.raises(
        FloatingPointError, match=r"non-finite training loss .* at step \d+ \(epoch 0"
    ):
        _train(tmp_path, "optimizer=sgd", "optimizer.lr=1e6", "model.norm=none")
    summary = _summary(tmp_path)
    assert summary["status"] == "failed" and "non-finite" in summary["error"]
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()  # NaN weights never saved


def test_checkpoint_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dnnexp.training.checkpoint import AtomicCheckpointIO

    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"weights": torch.ones(3)}, path)
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # like any file the user writes

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # the kill arrives in the middle of the write

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"weights": torch.zeros(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["weights"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left behind


def test_checkpoint_writes_are_rate_limited_but_never_lost(tmp_path: Path) -> None:
    from dnnexp.training.checkpoint import AtomicCheckpointIO

    io, best, last = (
        AtomicCheckpointIO(interval_s=3600),
        tmp_path / "best.ckpt",
        tmp_path / "last.ckpt",
    )
    weights = torch.ones(3)
    io.save_checkpoint({"weights": weights, "epoch": 0}, best)
    io.save_checkpoint({"weights": weights, "epoch": 0}, last)
    weights.mul_(5)  # training goes on in place
    io.save_checkpoint({"weights": weights, "epoch": 1}, last)
    weights.mul_(5)
    assert not best.exists() and not last.exists()  # not due yet: held in memory
    assert io.load_checkpoint(last)["epoch"] == 1  # reading a held file writes it first
    assert torch.equal(torch.load(best, weights_only=True)["weights"], torch.ones(3))
    assert torch.equal(torch.load(last, weights_only=True)["weights"], torch.full((3,), 5.0))

    io.save_checkpoint({"weights": weights, "epoch": 2}, last)
    io.teardown()  # the end of fit, an error or a signal: whatever is held gets written
    assert torch.load(last, weights_only=True)["epoch"] == 2

    due = AtomicCheckpointIO(interval_s=3600)
    due.last_write -= 7200  # the interval has passed: best and last of this step go together
    due.save_checkpoint({"epoch": 3, "global_step": 30}, tmp_path / "b.ckpt")
    due.save_checkpoint({"epoch": 3, "global_step": 30}, tmp_path / "l.ckpt")
    assert (tmp_path / "b.ckpt").exists() and (tmp_path / "l.ckpt").exists()
    due.save_checkpoint({"epoch": 4, "global_step": 40}, tmp_path / "l.ckpt")  # not due again
    assert torch.load(tmp_path / "l.ckpt", weights_only=True)["epoch"] == 3

    now = AtomicCheckpointIO(interval_s=0)
    now.save_checkpoint({"epoch": 7}, tmp_path / "now.ckpt")
    assert torch.load(tmp_path / "now.ckpt", weights_only=True)["epoch"] == 7


def test_rng_state_survives_a_weights_only_checkpoint(tmp_path: Path) -> None:
    import random

    import numpy as np

    from dnnexp.training.checkpoint import RNGState

    callback = RNGState()
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    torch.save({"rng": callback.state_dict()}, tmp_path / "c.ckpt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    callback.load_state_dict(torch.load(tmp_path / "c.ckpt", weights_only=True)["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert (
        torch.equal(got[0], expected[0]) and (got[1] == expected[1]).all() and got[2] == expected[2]
    )


def _fit_gets_worse(
    tmp_path: Path, epochs: int, interval_s: float, fail_at: int | None = None
) -> None:
    """Fit a tiny LightningModule whose monitored val/loss gets worse every epoch, and that
    fails at the start of epoch `fail_at`."""
    import lightning as L

    from dnnexp.training.checkpoint import AtomicCheckpointIO, BestAndLastCheckpoint

    class GetsWorse(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            if self.current_epoch == fail_at:
                raise RuntimeError("failed")
            return self.layer(batch).sum()

        def validation_step(self, batch, batch_idx):
            self.log("val/loss", float(self.current_epoch))  # worse every epoch

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.ones(4, 2), batch_size=2)
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[
            BestAndLastCheckpoint(
                dirpath=tmp_path, filename="best", monitor="val/loss", save_last=True
            )
        ],
        plugins=[AtomicCheckpointIO(interval_s=interval_s)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(GetsWorse(), data, data)


@pytest.mark.parametrize("interval_s", [0, 3600])
def test_last_ckpt_is_the_latest_epoch_even_when_it_is_not_the_best(
    tmp_path: Path, interval_s: float
) -> None:
    """Lightning >= 2.6 writes last.ckpt only when it writes a top-k checkpoint; a resume from
    last.ckpt must continue from the latest epoch, not from the best one. best.ckpt holds the
    weights only, last.ckpt all a resume needs."""
    _fit_gets_worse(tmp_path, epochs=3, interval_s=interval_s)
    best = torch.load(tmp_path / "best.ckpt", weights_only=True)
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert best["epoch"] == 0 and last["epoch"] == 2
    assert "optimizer_states" not in best and "optimizer_states" in last


@pytest.mark.parametrize("hold_s, last_epoch", [(3600, 0), (0, 2)])
def test_an_interrupted_run_keeps_the_last_state_taken_within_the_hold_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hold_s: float, last_epoch: int
) -> None:
    """While saves are held in memory, last.ckpt's state is taken at most every
    HOLD_INTERVAL_S: a run that fails in epoch 3 keeps epoch 0 with a long hold, epoch 2
    without one."""
    from dnnexp.training.checkpoint import BestAndLastCheckpoint

    monkeypatch.setattr(BestAndLastCheckpoint, "HOLD_INTERVAL_S", hold_s)
    with pytest.raises(RuntimeError, match="failed"):
        _fit_gets_worse(tmp_path, epochs=6, interval_s=3600, fail_at=3)
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == last_epoch
    assert torch.load(tmp_path / "best.ckpt", weights_only=True)["epoch"] == 0


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.slow
def test_a_refused_resume_leaves_the_run_dir_byte_for_byte(tmp_path: Path) -> None:
    """A resume that cannot continue the run is one line before anything is written: the
    completed run's summary.json, metrics.csv, checkpoints and .hydra/ stay as they were."""
    run = tmp_path / "run"
    done = run_cli(*ARGS[:1], *ARGS[2:], "data.batch_size=64", f"hydra.run.dir={run}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    corrupt = tmp_path / "corrupt"
    shutil.copytree(run, corrupt)
    last = corrupt / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    before = {d: _files(d) for d in (run, corrupt)}
    refusals = [
        (run, ["model.hidden=[32]"], "does not match the model mlp these overrides build"),
        (run, ["optimizer=sgd"], "the run trained with optimizer=adam, not sgd"),
        (run, ["data.split_seed=1"], "was trained on other data splits than these overrides give"),
        (
            run,
            ["trainer.max_epochs=2"],
            "the run has trained 3 epochs, more than trainer.max_epochs=2",
        ),
        (corrupt, [], "checkpoints/last.ckpt is not a readable checkpoint (truncated or corrupt"),
    ]
    for where, extra, message in refusals:
        proc = run_here("train", f"resume={where}", "trainer.max_epochs=5", *extra, cwd=tmp_path)
        code, err = proc.returncode, proc.stderr
        assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: resume={where}: ")
        assert message in err, err
        assert _files(where) == before[where], extra  # byte for byte
