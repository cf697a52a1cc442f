"""Output closed early: every command ends quietly, as Unix tools do on SIGPIPE; a training run
whose reader has gone still finishes. Real processes, real pipes, stdout buffered as a user's
(no PYTHONUNBUFFERED), so the interpreter's last flush is exercised too."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from dnnexp.utils.pipes import SIGPIPE_STATUS, QuietPipe, ReaderGone
from tests.conftest import dnnexp_command, needs_slow_mark, user_env


def _env() -> dict[str, str]:
    return {k: v for k, v in user_env().items() if k != "PYTHONUNBUFFERED"}


def _closed_reader(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`dnnexp ARGS` writing into a pipe whose reader exited before reading (`| true`)."""
    needs_slow_mark()
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [*dnnexp_command(), *args],
            cwd=cwd,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
            env=_env(),
        )
    finally:
        os.close(write)


def test_a_closed_pipe_stops_a_printing_stream_and_silences_it(tmp_path: Path) -> None:
    read, write = os.pipe()
    os.close(read)
    stream = os.fdopen(write, "w")
    quiet = QuietPipe(stream, stop=True)
    with pytest.raises(ReaderGone) as stop:
        quiet.write("x" * 100_000)
        quiet.flush()
    assert stop.value.code == SIGPIPE_STATUS
    assert quiet.write("more") == 4  # dropped from now on, without an error
    quiet.flush()
    stream.close()  # its fd now points to /dev/null: closing flushes nothing into a pipe


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["train", "--help"], ["train", "--cfg", "job"]],
    ids=["usage", "version", "train-help", "cfg"],
)
def test_a_reader_that_exits_before_reading_ends_the_command_quietly(
    tmp_path: Path, args: list[str]
) -> None:
    done = _closed_reader(args, tmp_path)
    assert done.stderr == ""
    assert done.returncode == SIGPIPE_STATUS


@pytest.mark.slow
def test_head_1_ends_the_command_quietly(tmp_path: Path) -> None:
    """As typed in a shell; `set -o pipefail` so the shell reports dnnexp's own status."""
    needs_slow_mark()
    command = " ".join(dnnexp_command())
    done = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command} train --help | head -1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert done.stdout.startswith("usage: dnnexp train")
    assert done.stdout.count("\n") == 1
    assert done.stderr == ""
    assert done.returncode in (0, SIGPIPE_STATUS)


@pytest.mark.slow
def test_a_training_run_whose_reader_has_gone_finishes_and_keeps_its_results(
    tmp_path: Path,
) -> None:
    done = _closed_reader(["train", "trainer=smoke", "hydra.run.dir=run"], tmp_path)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed"


@pytest.mark.slow
def test_a_report_into_a_closed_pipe_still_writes_its_files(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for seed in (0, 1, 2):
        run = sweep / str(seed)
        run.mkdir(parents=True)
        (run / "summary.json").write_text(
            json.dumps(
                {
                    "status": "completed",
                    "name": "mlp",
                    "seed": seed,
                    "overrides": [f"seed={seed}"],
                    "task": "classification",
                    "metrics": {"test/acc": 0.9 + seed / 100, "val/acc": 0.9},
                }
            )
        )
    done = _closed_reader(["report", str(sweep)], tmp_path)
    assert done.stderr == ""
    assert (sweep / "report.md").is_file() and (sweep / "report.json").is_file()
