"""Multiruns: failures recorded and tabled, reruns finish a sweep, launchers give the same runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dnnexp.config import conf_dir
from dnnexp.sweep import job
from dnnexp.sweep.callbacks import read_jobs
from tests.conftest import run_cli

FAST = [
    "data=synthetic",
    "data.num_samples=240",
    "trainer.max_epochs=2",
    "trainer.progress_bar=false",
    "trainer.model_summary=false",
]


def _summaries(sweep: Path) -> list[dict]:
    """Every job's summary, in job order (job 10 after job 9)."""
    return [summary for _, summary in read_jobs(sweep)]


def _jobs(option: str) -> list[list[str]]:
    """The jobs a sweep option expands to, as Hydra's BasicSweeper expands them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.load(conf_dir() / "sweep" / f"{option}.yaml").hydra.sweeper.params
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    (batch,) = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return batch


def test_reg_ablation_is_25_jobs_of_5_variants() -> None:
    batch = _jobs("reg_ablation")
    assert len(batch) == 25
    assert {o[0] for o in batch} == {
        "reg=none",
        "reg=dropout",
        "reg=weight_decay",
        "reg=early_stopping",
        "reg=[dropout,weight_decay,early_stopping]",
    }


@pytest.mark.parametrize(("option", "jobs"), [("norm_ablation", 15), ("lr_grid", 15)])
def test_other_sweeps_expand(option: str, jobs: int) -> None:
    assert len(_jobs(option)) == jobs


def test_threads_per_job_never_oversubscribe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job, "cpu_count", lambda: 2)
    joblib = OmegaConf.create(
        {
            "_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
            "n_jobs": -1,
        }
    )
    assert job.threads_per_job(joblib) == 1
    assert job.threads_per_job(OmegaConf.merge(joblib, {"n_jobs": 1})) == 2
    monkeypatch.setattr(job, "cpu_count", lambda: 16)
    assert job.threads_per_job(OmegaConf.merge(joblib, {"n_jobs": 4})) == 4
    assert (
        job.threads_per_job(
            OmegaConf.create(
                {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}
            )
        )
        == 16
    )


@pytest.mark.slow
def test_a_failing_job_does_not_stop_its_siblings(tmp_path: Path) -> None:
    proc = run_cli(
        "train",
        "-m",
        *FAST,
        "optimizer=sgd",
        "model.norm=none",
        "optimizer.lr=1e6,-1,0.01",
        "hydra.sweep.dir=sw",
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    nan, bad, good = _summaries(tmp_path / "sw")
    assert good["status"] == "completed"
    assert nan["status"] == "failed" and nan["error"].startswith(
        "FloatingPointError: non-finite training loss"
    )
    assert bad["status"] == "failed" and "optimizer.lr=-1.0 is out of range" in bad["error"]
    assert "failed jobs" in proc.stderr and "2 failed" in proc.stderr + proc.stdout
    assert "non-finite" in proc.stderr and "out of range" in proc.stderr
    last = tmp_path / "sw" / "0" / "checkpoints" / "last.ckpt"
    if last.exists():  # only the weights of an epoch that ended well are ever saved
        weights = torch.load(last, weights_only=True)["state_dict"].values()
        assert all(torch.isfinite(w).all() for w in weights if w.is_floating_point())

    report = run_cli("report", "sw", cwd=tmp_path)  # a sweep with failures still reports
    assert report.returncode == 0, report.stderr
    assert "optimizer.lr=0.01" in report.stdout and "failed" in report.stdout
    for name in (
        "report.md",
        "report.csv",
        "report.json",
        "learning_curves.png",
        "metric_test_acc.png",
    ):
        assert (tmp_path / "sw" / name).stat().st_size > 0, name


@pytest.mark.slow
def test_rerun_into_the_same_sweep_dir_skips_completed_jobs(tmp_path: Path) -> None:
    args = ["train", "-m", *FAST, "seed=0,1", "hydra.sweep.dir=sw"]
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    ckpt = tmp_path / "sw" / "1" / "checkpoints" / "best.ckpt"
    before = ckpt.stat().st_mtime_ns
    (tmp_path / "sw" / "0" / "summary.json").write_text('{"status": "interrupted"}')  # cut off
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "job 1: already completed" in again.stdout and "job 0: already" not in again.stdout
    assert ckpt.stat().st_mtime_ns == before  # not retrained
    first, second = _summaries(tmp_path / "sw")
    assert first["status"] == "completed" and second["status"] == "completed"
    assert "2 completed (1 reused from an earlier run), 0 failed" in again.stdout
    assert not list((tmp_path / "sw").rglob(".claim.json"))  # every claim released

    other = run_cli("train", "-m", *FAST, "seed=0,1,2", "hydra.sweep.dir=sw", cwd=tmp_path)
    assert other.returncode == 2 and "holds another sweep" in other.stderr
    assert ckpt.stat().st_mtime_ns == before


@pytest.mark.slow
def test_joblib_gives_the_same_metrics_as_sequential(tmp_path: Path) -> None:
    args = ["train", "-m", *FAST, "trainer.num_threads=1", "seed=0,1"]
    seq = run_cli(*args, "hydra.sweep.dir=seq", cwd=tmp_path)
    par = run_cli(*args, "hydra/launcher=joblib", "hydra.sweep.dir=par", cwd=tmp_path)
    assert seq.returncode == par.returncode == 0, par.stderr
    for a, b in zip(_summaries(tmp_path / "seq"), _summaries(tmp_path / "par"), strict=True):
        assert a["metrics"] == b["metrics"]


@pytest.mark.slow
def test_a_reused_joblib_worker_starts_each_job_clean(tmp_path: Path) -> None:
    """One worker runs both jobs; the second must match the same config run alone."""
    sweep = run_cli(
        "train",
        "-m",
        *FAST,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=1",
        "trainer.deterministic=true,false",
        "model.activation=gelu,relu",
        "hydra.sweep.dir=sw",
        cwd=tmp_path,
    )
    assert sweep.returncode == 0, sweep.stderr
    alone = run_cli(
        "train",
        *FAST,
        "trainer.deterministic=false",
        "model.activation=relu",
        "hydra.run.dir=alone",
        cwd=tmp_path,
    )
    assert alone.returncode == 0, alone.stderr
    last = _summaries(tmp_path / "sw")[-1]
    assert [o.lower() for o in last["overrides"][-2:]] == [
        "trainer.deterministic=false",
        "model.activation=relu",
    ]
    assert (
        last["metrics"] == json.loads((tmp_path / "alone" / "summary.json").read_text())["metrics"]
    )


@pytest.mark.slow
def test_submitit_local_runs_a_two_job_sweep(tmp_path: Path) -> None:
    proc = run_cli(
        "train",
        "-m",
        *FAST,
        "hydra/launcher=submitit_local",
        "seed=0,1",
        "hydra.sweep.dir=sw",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert [s["status"] for s in _summaries(tmp_path / "sw")] == ["completed", "completed"]


def test_a_job_returns_its_validation_score_never_a_test_metric() -> None:
    from dnnexp.sweep.job import objective_value

    summary = {"metrics": {"test/acc": 0.9, "val/acc": 0.8, "val/loss": 0.5}}
    assert objective_value(summary) == 0.8
    assert objective_value({"status": "failed", "metrics": {}}) is None
