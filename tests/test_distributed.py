"""DDP as users start it: Lightning's own ranks, ddp_spawn, torchrun; on the CPU with gloo, with
the progress bar on a terminal; and a GPU asked for where there is none."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import metrics_rows, run_cli, run_dirs, run_here, summary, user_env

SMOKE = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
]
README_DDP = ["train", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]


def run_in_terminal(args: list[str], cwd: Path, timeout: float = 300) -> tuple[int, str]:
    """`python -m dnnexp ARGS` with a pseudo-terminal as stdin, stdout and stderr, as in a
    shell: rich draws the live progress bar, which it does not do into a pipe."""
    env = user_env(LINES="40", TERM="xterm-256color")
    env.pop("CI", None)  # rich treats CI=true as "not interactive"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dnnexp", *args],
        cwd=cwd,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    chunks, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every process holding the terminal has exited
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    try:
        rc = proc.wait(timeout=max(1.0, end - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    return rc, b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_readme_ddp_command_runs_on_a_terminal_with_the_progress_bar(tmp_path: Path) -> None:
    rc, screen = run_in_terminal([*README_DDP, *SMOKE, "hydra.run.dir=ddp"], cwd=tmp_path)
    assert rc == 0, screen[-3000:]
    assert "Traceback" not in screen and "AssertionError" not in screen
    assert "\x1b[" in screen  # rich drew for a terminal (colours, cursor moves)
    assert "Epoch 1/1" in screen and "Testing" in screen  # the live bars
    assert "on the test split" in screen
    run = tmp_path / "ddp"
    assert summary(run)["status"] == "completed"
    assert (run / "train_ddp_rank_1.log").is_file()  # rank 1 ran inside the same run dir
    assert len(metrics_rows(run)) == 2


@pytest.mark.slow
def test_ddp_spawn_and_auto_strategy_give_the_ddp_result(tmp_path: Path) -> None:
    """ddp_spawn trains in spawned processes (history and test metrics come back to the main
    one); strategy auto with 2 CPU devices is Lightning's re-run of the command, which must
    run this job's overrides, not the command line."""
    results = {}
    for strategy in ("ddp", "ddp_spawn", "auto"):
        proc = run_cli(
            "train",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            f"trainer.strategy={strategy}",
            *SMOKE,
            f"hydra.run.dir={strategy}",
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[strategy] = summary(tmp_path / strategy)
        assert metrics_rows(tmp_path / strategy) == metrics_rows(tmp_path / "ddp")
    for strategy in ("ddp_spawn", "auto"):
        assert results[strategy]["metrics"] == results["ddp"]["metrics"], strategy
        assert results[strategy]["epochs"] == results["ddp"]["epochs"] == 2
    assert len(run_dirs(tmp_path)) == 3


@pytest.mark.slow
def test_torchrun_runs_one_job_with_two_ranks_in_one_run_dir(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun") or pytest.skip("torchrun is not on PATH")
    env = user_env()
    proc = subprocess.run(
        [
            torchrun,
            "--nproc_per_node=2",
            "--standalone",
            "-m",
            "dnnexp",
            *README_DDP,
            *SMOKE,
            "trainer.progress_bar=false",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = run_dirs(tmp_path)
    assert len(runs) == 1, runs  # not one run dir per rank
    assert [p.name for p in (tmp_path / "outputs").glob("*/*")] == [runs[0].name]
    assert summary(runs[0])["status"] == "completed"
    assert (runs[0] / "train_ddp_rank_1.log").is_file()
    assert len(metrics_rows(runs[0])) == 2
    assert proc.stdout.count("on the test split") == 1  # rank 0 reports, rank 1 does not


NO_GPU = "no GPU is visible to torch here"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["trainer=gpu"],
            f"error: trainer.accelerator=gpu: {NO_GPU}; use trainer=cpu or"
            " trainer.accelerator=auto",
        ),
        (["trainer=ddp"], f"error: trainer.accelerator=gpu: {NO_GPU}; use trainer.accelerator=cpu"),
        (["trainer.accelerator=gpu"], f"error: trainer.accelerator=gpu: {NO_GPU}"),
        (
            ["trainer.accelerator=cuda", "trainer.devices=4"],
            f"error: trainer.accelerator=cuda: {NO_GPU}",
        ),
        (
            ["trainer.accelerator=cpu", "trainer.devices=[0,1]"],
            "error: trainer.devices=[0, 1]: on the CPU, devices is a number of processes",
        ),
    ],
)
def test_a_gpu_asked_for_where_there_is_none_is_one_line(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    proc = run_here("train", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(expected) and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stdout == ""  # nothing before it: no config tree
    assert not (tmp_path / "outputs").exists()  # no run dir


def test_more_gpus_than_visible_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from dnnexp.config.errors import ConfigError
    from dnnexp.config.hardware import check_devices
    from tests.conftest import compose

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    check_devices(compose("trainer=gpu", "trainer.devices=2").trainer)  # fits
    with pytest.raises(ConfigError) as err:
        check_devices(compose("trainer=gpu", "trainer.devices=4").trainer)
    assert str(err.value) == (
        "trainer.devices=4: 2 GPUs visible to torch here (CUDA_VISIBLE_DEVICES=0,1); use"
        " trainer.devices=2 or fewer (or trainer.devices=auto)"
    )
    with pytest.raises(ConfigError, match=r"trainer.devices=\[0, 3\]: no GPU 3 here"):
        check_devices(compose("trainer=gpu", "trainer.devices=[0,3]").trainer)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    check_devices(compose("trainer.devices=2").trainer)  # auto: 2 CPU processes


def test_ranks_started_by_a_launcher_share_rank_0s_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """srun: every task derives the same dir from the job and step ids; no launcher: a fresh
    claimed dir per run."""
    from dnnexp.config.hydra_setup import unique_dir
    from dnnexp.config.ranks import external_rank, secondary_rank, shared_dir

    base = str(tmp_path / "run")
    assert shared_dir(base, unique_dir) == base and shared_dir(base, unique_dir) == base + "-1"
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_STEP_ID", "3")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    dirs = set()
    for rank in ("1", "0"):
        monkeypatch.setenv("SLURM_PROCID", rank)
        dirs.add(shared_dir(base, unique_dir))
        assert external_rank() == int(rank) and secondary_rank() == (int(rank) or None)
    assert dirs == {base + "-slurm77.3"} and Path(base + "-slurm77.3").is_dir()


@pytest.mark.slow
def test_ddp_regression_metrics_add_up_over_ranks_to_the_one_process_ones(tmp_path: Path) -> None:
    """Two ranks each score half of the test split; their summed sums must give the metrics of
    the whole split, which a one-process `dnnexp eval` of the same checkpoint computes."""
    proc = run_cli(
        *README_DDP,
        "task=regression",
        "data=synthetic_regression",
        "data.num_targets=2",
        "data.eval_batch_size=64",
        *SMOKE,
        "trainer.limit_test_batches=1.0",  # the whole test split, as dnnexp eval scores it
        "hydra.run.dir=ddp",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "ddp"
    trained = summary(run)["metrics"]
    scored = run_cli("eval", f"ckpt={run}/checkpoints/best.ckpt", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr[-3000:]
    alone = json.loads((run / "eval" / "best.json").read_text())["metrics"]
    assert set(alone) == {"test/loss", "test/mse", "test/rmse", "test/mae", "test/r2"}
    assert alone == pytest.approx({k: v for k, v in trained.items() if k in alone}, rel=1e-5)
