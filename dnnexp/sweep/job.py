"""What every job of a multirun does before it trains: start from a clean process state, use its
share of the cores, and skip itself when its run dir already holds the same completed run."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dnnexp.config.errors import RunError
from dnnexp.config.metrics import summary_task, task_score
from dnnexp.utils.claims import Holder
from dnnexp.utils.run_files import LAST_CKPT, SUMMARY


def objective_value(summary: dict[str, Any]) -> float | None:
    """A run's score for whatever drives the sweep (Hydra's return value, a search): the
    validation metric its task names (`config/metrics.py`: val/acc, val/r2; multitask: the
    `score` it recorded, `val/<head>/<metric>`) at the best checkpoint. The test split is only
    ever reported."""
    metric = task_score(summary_task(summary))
    return summary.get("metrics", {}).get(metric)


def config_hash(cfg: DictConfig) -> str:
    """Identifies a job's resolved config (what it trains), independent of where it runs."""
    text = OmegaConf.to_yaml(cfg, resolve=True, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def earlier_run(run_dir: Path, cfg_hash: str) -> tuple[str, dict[str, Any] | None]:
    """What run_dir holds from an earlier run of this job, and its summary:

    - "completed": the same config, completed (the job is skipped);
    - "resumable": the same config, interrupted or killed (status still "running") with a
      last.ckpt (the job resumes from it: with the claim held, nobody else is running it);
    - "new": nothing, or a failed run (trained again from the start).

    Raises RunError when run_dir holds a completed run of another config: it is never
    overwritten."""
    try:
        summary = json.loads((run_dir / SUMMARY).read_text())
    except (OSError, ValueError):
        return "new", None
    same = summary.get("config_hash") == cfg_hash
    if summary.get("status") == "completed":
        if not same:
            raise RunError(
                f"{run_dir} holds a completed run of another config; it is kept as it is:"
                " run this sweep into a new hydra.sweep.dir"
            )
        return "completed", summary
    resumable = summary.get("status") in ("interrupted", "running")
    if same and resumable and (run_dir / LAST_CKPT).is_file():
        return "resumable", summary
    return "new", None


def ran_by_other(summary: dict[str, Any] | None, sweep_id: str | None) -> Holder | None:
    """The process that ran this job while the sweep `sweep_id` was running, when that was
    another process (one sharing the sweep dir); None for the sweep's own jobs and for those
    that ended before it started (an earlier run's, reused)."""
    if summary is None or sweep_id is None or summary.get("sweep_id") == sweep_id:
        return None
    started = float(sweep_id.rsplit(":", 1)[1])
    if summary.get("ended_at", float("inf")) < started:
        return None
    host, _, pid = str(summary.get("worker", "")).rpartition(":")
    return Holder(host, int(pid)) if pid.isdigit() else None


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parallel_jobs(launcher: Any) -> int:
    """How many jobs the launcher runs at once on this machine (1 for the basic launcher)."""
    target = str(getattr(launcher, "_target_", "") or "")
    if "Joblib" in target:
        n_jobs = int(launcher.get("n_jobs") or -1)
        return n_jobs if n_jobs > 0 else max(1, cpu_count() + 1 + n_jobs)  # joblib: -1 = all
    if "Submitit" in target:
        return max(1, int(launcher.get("array_parallelism") or 1))
    return 1  # jobs run one after another in this process


def threads_per_job(launcher: Any) -> int:
    """Torch threads for one job so that parallel jobs x threads never exceed the cores."""
    cores = cpu_count()
    target = str(getattr(launcher, "_target_", "") or "")
    if "Submitit" in target:  # each job on its own cpus_per_task
        return max(1, int(launcher.get("cpus_per_task") or 1))
    return max(1, cores // min(parallel_jobs(launcher), cores))


def start_clean(threads: int) -> None:
    """Reset the process-global state a previous job in a reused worker (joblib) may have left:
    thread count and deterministic-algorithm mode. Seeds are set per run, and every run restores
    the distributed env it changed (dnnexp.training.ddp.job_scope)."""
    import torch

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(False)
