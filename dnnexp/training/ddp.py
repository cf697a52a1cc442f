"""DDP within a job: Lightning's relaunch of ranks > 0 as this job (not the whole sweep), and the
clean-up that leaves no distributed state behind a job."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from dnnexp.config import config_dirs


@contextlib.contextmanager
def job_scope() -> Iterator[None]:
    """Leave no distributed state behind a job: a multirun runs the next DDP job in the same
    process, and a stale process group (or the last job's MASTER_PORT) would hang it."""
    saved = {key: os.environ.get(key) for key in _DDP_ENV}
    try:
        yield
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def launch_ranks_as_this_job(run_dir: Path, overrides: list[str]) -> None:
    """Lightning starts DDP ranks > 0 by re-running `sys.argv`; under `-m` each rank would run
    the whole sweep. Start them instead with this job's own overrides and run dir."""
    from dnnexp.compat import lightning_subprocess_launcher

    subprocess_script = lightning_subprocess_launcher()

    def job_command(local_rank: int) -> tuple[list[str], str]:
        command = [sys.executable, "-m", "dnnexp", "train", *_config_dir_args(), *overrides]
        command += [
            f"hydra.run.dir={run_dir}",
            "hydra.output_subdir=null",
            f"hydra.job.name=train_ddp_rank_{local_rank}",
        ]
        return command, str(Path.cwd())

    subprocess_script._hydra_subprocess_cmd = job_command


def _config_dir_args() -> list[str]:
    """--config-dir/-cd DIR from this process's command line, made absolute for the children."""
    return [f"--config-dir={Path(d).resolve()}" for d in config_dirs(sys.argv[1:])]
