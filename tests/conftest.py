"""Shared helpers: compose configs like `dnnexp train` does, and run the real CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig

pytest_plugins = ["tests.postgres_server"]  # the postgres_url fixture

REPO = Path(__file__).resolve().parents[1]


def compose(*overrides: str) -> DictConfig:
    """The config `dnnexp train <overrides>` would build, validated (no run dir created)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from dnnexp.config import conf_dir, schema
    from dnnexp.config.hydra_setup import register_resolvers
    from dnnexp.config.validate import validate

    schema.register()
    register_resolvers()
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = hydra_compose("train", overrides=list(overrides))
    return validate(cfg)


def user_env(**extra: str) -> dict[str, str]:
    """This process's environment as a user's shell has it: without HYDRA_FULL_ERROR (which
    turns one-line errors into tracebacks), 120 columns, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return {**env, "COLUMNS": "120", **extra}


def run_cli(
    *args: str, cwd: Path, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """`python -m dnnexp ARGS` in `cwd`, as a user would run it."""
    full_env = user_env(PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "dnnexp", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def metrics_rows(run_dir: Path) -> list[dict]:
    """The rows of a run's metrics.csv, without the (timing-dependent) epoch_time_s column."""
    with (run_dir / "metrics.csv").open() as f:
        return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in csv.DictReader(f)]


def run_dirs(root: Path) -> list[Path]:
    """Every run dir (a dir holding summary.json) under root, oldest first."""
    return sorted(p.parent for p in root.rglob("summary.json"))


@pytest.fixture
def fast_overrides() -> list[str]:
    """A tiny but real training run: synthetic data, 2 short epochs, quiet terminal."""
    return [
        "data=synthetic",
        "data.num_samples=300",
        "trainer.max_epochs=2",
        "trainer.progress_bar=false",
        "trainer.model_summary=false",
    ]
