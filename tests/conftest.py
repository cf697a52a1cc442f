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


_warm: dict[str, object] = {}  # the warm runner's server (tests/warm.py), started on first use


def dnnexp_command() -> list[str]:
    """The command that runs `dnnexp ARGS` as a new process would: through the warm runner
    (`import lightning` paid once per test session, not per command), or with
    DNNEXP_TEST_COLD=1 a plain `python -m dnnexp`."""
    cold = [sys.executable, "-m", "dnnexp"]
    if os.environ.get("DNNEXP_TEST_COLD") == "1":
        return cold
    if "socket" not in _warm:
        import atexit
        import tempfile

        where = tempfile.mkdtemp(prefix="dnnexp-warm-")
        path = os.path.join(where, "socket")
        server = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "warm.py"), "serve", path],
            env=user_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        if server.stdout.readline().strip() != "ready":
            server.kill()
            _warm["socket"] = None
        else:
            _warm["socket"] = path
            atexit.register(server.kill)
    if _warm["socket"] is None:
        return cold
    return [sys.executable, str(REPO / "tests" / "warm.py"), "run", str(_warm["socket"])]


_current: dict[str, pytest.Item] = {}


@pytest.fixture(autouse=True)
def _current_test(request: pytest.FixtureRequest) -> None:
    _current["item"] = request.node


def needs_slow_mark() -> None:
    """A test that starts dnnexp processes belongs to the full suite: `-m "not slow"` (the fast
    lane) runs every other test, and this keeps it so."""
    item = _current.get("item")
    if item is not None and item.get_closest_marker("slow") is None:
        raise AssertionError(
            f"{item.nodeid} starts a dnnexp process: mark it @pytest.mark.slow, or call"
            " dnnexp.cli.main(argv) in this process instead"
        )


def run_cli(
    *args: str, cwd: Path, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """`python -m dnnexp ARGS` in `cwd`, as a user would run it (dnnexp_command)."""
    needs_slow_mark()
    full_env = user_env(PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run(
        [*dnnexp_command(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def run_here(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`dnnexp ARGS` in this process (`dnnexp.cli.main`), in `cwd`, with a user's environment:
    for refusals, which end before any run starts; its exit code, stdout and stderr as
    run_cli gives them."""
    import contextlib
    import io

    from dnnexp.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), list(sys.argv)
    os.environ.clear()
    os.environ.update(user_env())
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
    return subprocess.CompletedProcess(["dnnexp", *args], code, out.getvalue(), err.getvalue())


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def train_here(
    run_dir: Path, base: tuple[str, ...], *overrides: str, resume: Path | None = None
) -> dict:
    """A training run in this process, into `run_dir`: the `base` overrides, then the test's
    own (recorded as the run's overrides); `resume`: a run dir to continue. Its summary."""
    from dnnexp.training.run import train

    run_dir.mkdir(exist_ok=True)
    more = [f"resume={resume}"] if resume else []
    cfg = compose(*base, *overrides, *more)
    return train(cfg, run_dir=run_dir, overrides=list(overrides))


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
