"""Faults a long sweep meets: several processes in one sweep dir (run-dir claims), and a disk
that fills up in the middle of a run (every write of a run's files)."""

from __future__ import annotations

import contextlib
import errno
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from dnnexp.utils import claims
from dnnexp.utils.claims import CLAIM, Claim, Holder
from dnnexp.utils.run_files import WriteFailed, write_failure, write_json, write_text
from tests.conftest import compose, metrics_rows, run_cli, summary

FAST = [
    "data=synthetic",
    "data.num_samples=300",
    "trainer.progress_bar=false",
    "trainer.model_summary=false",
    "trainer.checkpoint_interval_s=0",  # every epoch's checkpoints on disk
]


def _no_temp_files(root: Path) -> None:
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


# --- claims -------------------------------------------------------------------------------


def test_a_claim_is_exclusive_until_released(tmp_path: Path) -> None:
    first = Claim(tmp_path)
    assert first.acquire() is None and (tmp_path / CLAIM).is_file()
    held = Claim(tmp_path).acquire()  # this process is alive: never taken over
    assert held is not None and held.pid == os.getpid() and held.local
    assert claims.holder(tmp_path) == held
    first.release()
    assert not (tmp_path / CLAIM).exists() and claims.holder(tmp_path) is None
    with Claim(tmp_path) as again:
        assert again.acquire() is None
    assert not list(tmp_path.iterdir())  # nothing left behind: no lock or temp file


def _claim_in_a_child(run_dir: Path, then: str) -> subprocess.Popen:
    code = (
        "import sys, time, os; from dnnexp.utils.claims import Claim;"
        f" assert Claim({str(run_dir)!r}).acquire() is None; print('claimed', flush=True); {then}"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_a_dead_holders_claim_is_taken_over_a_live_ones_never(tmp_path: Path) -> None:
    dead = _claim_in_a_child(tmp_path, "os._exit(0)")  # ends without releasing (as a SIGKILL)
    dead.communicate(timeout=60)
    assert (tmp_path / CLAIM).is_file() and claims.holder(tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".last.ckpt.x1y2.tmp").write_bytes(b"half a checkpoint")
    taker = Claim(tmp_path)
    assert taker.acquire() is None and taker.took_over.pid == dead.pid
    _no_temp_files(tmp_path)  # what the dead process left half-written is gone with its claim
    taker.release()

    live = _claim_in_a_child(tmp_path, "time.sleep(120)")
    try:
        assert live.stdout.readline().strip() == "claimed"
        held = Claim(tmp_path).acquire()
        assert held is not None and held.pid == live.pid
        assert "on this host" in held.describe()
    finally:
        live.kill()
        live.wait()
    assert Claim(tmp_path).acquire() is None  # SIGKILLed: now it is stale


def test_another_hosts_claim_is_never_taken_over(tmp_path: Path) -> None:
    (tmp_path / CLAIM).write_text(json.dumps({"host": "node7", "pid": 1, "started": 0}))
    held = Claim(tmp_path).acquire()
    assert held is not None and not held.local and held.describe() == "pid 1 on host node7"
    assert (tmp_path / CLAIM).is_file()


def test_a_reused_pid_or_a_reboot_does_not_keep_a_claim_alive(tmp_path: Path) -> None:
    me = Holder.me()
    assert claims.alive(me.host, me.pid, me.process_start, me.boot)
    assert not claims.alive(me.host, me.pid, "1", me.boot)  # the pid now runs another process
    assert not claims.alive(me.host, me.pid, me.process_start, "another-boot")


def _race(run_dir: str, start: float, results: multiprocessing.Queue) -> None:
    while time.time() < start:
        pass
    claim = Claim(Path(run_dir))
    results.put(claim.acquire() is None)


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale"])
def test_processes_racing_for_a_dir_get_exactly_one_claim(tmp_path: Path, stale: bool) -> None:
    if stale:  # a dead process's claim, which all of them try to take over at once
        dead = _claim_in_a_child(tmp_path, "os._exit(0)")
        dead.communicate(timeout=60)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start = time.time() + 0.5
    procs = [context.Process(target=_race, args=(str(tmp_path), start, results)) for _ in range(6)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert sorted(results.get(timeout=5) for _ in procs) == [False] * 5 + [True]


# --- failed writes, injected ----------------------------------------------------------------


class _FillingFile:
    """A file whose disk fills up after `room` more bytes: the rest of a write is refused with
    ENOSPC, as a full disk does."""

    def __init__(self, file: object, room: int) -> None:
        self.file, self.room = file, room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.file.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.file, name)

    def __iter__(self) -> Iterator:
        return iter(self.file)

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


@contextlib.contextmanager
def _disk_fills(monkeypatch: pytest.MonkeyPatch, after_writes: int, room: int = 1000) -> Iterator:
    """Checkpoint files written through os.fdopen: the first `after_writes` go through, then the
    disk is full."""
    real = os.fdopen
    count = [0]

    def fdopen(fd: int, *args: object, **kwargs: object) -> object:
        count[0] += 1
        file = real(fd, *args, **kwargs)
        return file if count[0] <= after_writes else _FillingFile(file, room)

    monkeypatch.setattr(os, "fdopen", fdopen)
    yield count
    monkeypatch.setattr(os, "fdopen", real)


def test_a_checkpoint_that_cannot_be_written_keeps_the_last_good_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dnnexp.training.checkpoint import AtomicCheckpointIO

    io = AtomicCheckpointIO(interval_s=0.0, hold_dir=tmp_path)
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 0, "w": torch.ones(1000)}, path)
    with _disk_fills(monkeypatch, after_writes=0), pytest.raises(WriteFailed) as failed:
        io.save_checkpoint({"epoch": 1, "w": torch.zeros(1000)}, path)
    assert str(failed.value) == f"cannot write {path}: no space left on device"
    assert failed.value.out_of_space
    assert torch.load(path, weights_only=True)["epoch"] == 0  # intact and loadable
    _no_temp_files(tmp_path)


def test_a_metrics_row_that_cannot_be_written_leaves_no_half_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dnnexp.training.csv_logger import CSVTable

    table = CSVTable(tmp_path / "metrics.csv")
    table.append({"epoch": 0, "step": 10, "val/acc": 0.5})
    before = (tmp_path / "metrics.csv").read_bytes()
    real_open = Path.open

    def full_open(self: Path, *args: object, **kwargs: object) -> object:
        return _FillingFile(real_open(self, *args, **kwargs), room=5)

    monkeypatch.setattr(Path, "open", full_open)
    with pytest.raises(WriteFailed, match="metrics.csv: no space left on device"):
        table.append({"epoch": 1, "step": 20, "val/acc": 0.75})
    with pytest.raises(WriteFailed):  # a new column rewrites the file: the old one is kept
        table.append({"epoch": 1, "step": 20, "val/acc": 0.75, "val/f1": 0.7})
    monkeypatch.setattr(Path, "open", real_open)
    assert (tmp_path / "metrics.csv").read_bytes() == before
    _no_temp_files(tmp_path)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS])
def test_summary_and_text_files_are_written_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    write_json(tmp_path / "summary.json", {"status": "running"})
    write_text(tmp_path / "best.yaml", "a: 1\n")
    real = Path.write_text

    def failing(self: Path, text: str, *args: object, **kwargs: object) -> int:
        real(self, text[:3])
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(Path, "write_text", failing)
    for path, write in (
        (tmp_path / "summary.json", lambda p: write_json(p, {"status": "completed"})),
        (tmp_path / "best.yaml", lambda p: write_text(p, "a: 2\n")),
    ):
        with pytest.raises(WriteFailed) as failed:
            write(path)
        assert failed.value.path == path and failed.value.reason == os.strerror(code).lower()
        assert failed.value.out_of_space == (code in (errno.ENOSPC, errno.EDQUOT))
    monkeypatch.setattr(Path, "write_text", real)
    assert json.loads((tmp_path / "summary.json").read_text()) == {"status": "running"}
    assert (tmp_path / "best.yaml").read_text() == "a: 1\n"
    _no_temp_files(tmp_path)


def test_a_failed_write_is_found_behind_the_errors_raised_while_handling_it() -> None:
    failed = WriteFailed(Path("x"), OSError(errno.ENOSPC, "No space left on device"))
    try:
        try:
            raise failed
        except WriteFailed:
            raise RuntimeError("teardown went wrong too") from None
    except RuntimeError as err:
        assert write_failure(err) is None  # `from None` hides it: not ours to guess
    try:
        try:
            raise failed
        except WriteFailed:
            raise RuntimeError("raised while handling it")  # noqa: B904
    except RuntimeError as err:
        assert write_failure(err) is failed


def test_a_run_whose_disk_fills_stops_resumable_and_resumes_to_the_undisturbed_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the run itself: the checkpoint of epoch 1 cannot be written. One line names the file
    and says how to go on, summary.json says interrupted, last.ckpt is epoch 0's; freed, the
    resumed run ends with exactly the metrics of a run left alone."""
    from dnnexp.config.errors import RunStopped
    from dnnexp.training.run import train

    overrides = [*FAST, "trainer.max_epochs=3"]
    (tmp_path / "alone").mkdir()
    alone = train(compose(*overrides), tmp_path / "alone", overrides)

    run = tmp_path / "full"
    run.mkdir()
    with _disk_fills(monkeypatch, after_writes=2), pytest.raises(RunStopped) as stopped:
        train(compose(*overrides), run, overrides)  # epoch 0: best + last, then full
    last = run / "checkpoints" / "last.ckpt"
    assert str(stopped.value) == (
        f"cannot write {run / 'checkpoints'}/best.ckpt: no space left on device; the last good"
        f" checkpoint is kept: free some space, then dnnexp train resume={run}"
    )
    assert summary(run)["status"] == "interrupted"
    assert summary(run)["error"] == str(stopped.value)
    assert torch.load(last, weights_only=True)["epoch"] == 0
    assert len(metrics_rows(run)) == 2  # epoch 1's row was written before its checkpoint
    _no_temp_files(run)

    resumed = train(compose(*overrides, f"resume={run}"), run, overrides)
    assert resumed["status"] == "completed" and resumed["metrics"] == alone["metrics"]
    assert metrics_rows(run) == metrics_rows(tmp_path / "alone")


# --- through the CLI: a real full disk (a small tmpfs) ----------------------------------------


@contextlib.contextmanager
def _small_disk(path: Path, size_kb: int) -> Iterator[Path]:
    """A tmpfs of `size_kb` at path (root only), grown with _grow."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _grow(path: Path, size_kb: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size_kb}k", str(path)], check=True)


def _error_lines(result: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_disk_that_fills_mid_run_or_mid_sweep_is_one_line_and_resumable(
    tmp_path: Path,
) -> None:
    """A 2.2 MB disk holds epoch 0's best.ckpt and last.ckpt (1.4 MB) but not a second last.ckpt
    beside the first while it is written."""
    args = ["train", "trainer.max_epochs=3", "trainer.checkpoint_interval_s=0"]
    args += ["trainer.progress_bar=false", "trainer.model_summary=false"]
    reference = run_cli(*args, "hydra.run.dir=reference", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    with _small_disk(tmp_path / "disk", 2200) as disk:
        full = run_cli(*args, f"hydra.run.dir={disk / 'run'}", cwd=tmp_path)
        assert full.returncode == 1
        assert _error_lines(full) == [
            f"error: cannot write {disk}/run/checkpoints/last.ckpt: no space left on device;"
            f" the last good checkpoint is kept: free some space, then dnnexp train"
            f" resume={disk}/run"
        ]
        assert summary(disk / "run")["status"] == "interrupted"
        torch.load(disk / "run" / "checkpoints" / "last.ckpt", weights_only=True)
        _no_temp_files(disk)
        assert not (disk / "run" / CLAIM).exists()

        sweep = [*args[:1], "-m", "seed=0,1", *args[1:], f"hydra.sweep.dir={disk / 'sweep'}"]
        _grow(disk, 3600)  # room for the run's files and a sweep's first job, not its second
        stopped = run_cli(*sweep, cwd=tmp_path)
        assert stopped.returncode == 1
        (line,) = _error_lines(stopped)
        assert line.startswith(f"error: cannot write {disk}/sweep/0/checkpoints/")
        assert line.endswith(
            "free some space, then run the same command again: this job resumes from it"
        )
        assert not (disk / "sweep" / "1").exists()  # the sweep stopped with its job

        _grow(disk, 20000)  # space is freed
        resumed = run_cli("train", f"resume={disk / 'run'}", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert summary(disk / "run")["metrics"] == summary(tmp_path / "reference")["metrics"]
        assert metrics_rows(disk / "run") == metrics_rows(tmp_path / "reference")
        finished = run_cli(*sweep, cwd=tmp_path)
        assert finished.returncode == 0, finished.stderr
        assert "job 0: interrupted earlier, resumes from its last checkpoint" in finished.stdout
        assert (
            summary(disk / "sweep" / "0")["metrics"] == summary(tmp_path / "reference")["metrics"]
        )
        _no_temp_files(disk)


# --- several processes, one sweep dir ---------------------------------------------------------


def _start(cwd: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.Popen(
        [sys.executable, "-m", "dnnexp", *args],
        cwd=cwd,
        env={**env, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_two_processes_on_one_sweep_dir_train_each_job_once(tmp_path: Path) -> None:
    args = ["train", "-m", *FAST, "trainer.max_epochs=20", "seed=0,1,2,3", "hydra.sweep.dir=sw"]
    first, second = _start(tmp_path, *args), _start(tmp_path, *args)  # together
    outputs = [proc.communicate(timeout=300) for proc in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    ran = {}  # job -> the process that trained it
    for job in range(4):
        rows = metrics_rows(tmp_path / "sw" / str(job))
        assert [int(r["epoch"]) for r in rows] == list(range(20))  # each epoch once, in order
        assert summary(tmp_path / "sw" / str(job))["status"] == "completed"
        ran[job] = summary(tmp_path / "sw" / str(job))["worker"].rsplit(":", 1)[1]
    assert set(ran.values()) == {str(first.pid), str(second.pid)}  # both did some of the work
    for proc, (out, _) in zip((first, second), outputs, strict=True):
        mine = [j for j, pid in ran.items() if pid == str(proc.pid)]
        theirs = [j for j in ran if j not in mine]
        assert f"4 jobs, {len(mine)} completed, {len(theirs)} by another process, 0 failed" in out
        for job in mine:
            assert f"job {job} (" in out  # trained here
        for job in theirs:  # skipped, and tabled as the other's
            assert f"job {job}: running in pid {ran[job]} on this host, skipped" in out or (
                f"job {job}: completed by pid {ran[job]} on this host, skipped" in out
            )
            assert f"by pid {ran[job]} on this host" in out.split("jobs another process ran")[1]
    assert not list((tmp_path / "sw").rglob(CLAIM))


@pytest.mark.slow
def test_a_killed_jobs_claim_is_taken_over_and_a_live_ones_is_refused(tmp_path: Path) -> None:
    args = ["train", "-m", *FAST, "trainer.max_epochs=8", "seed=0"]
    reference = run_cli(*args, "hydra.sweep.dir=reference", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr

    proc = _start(tmp_path, *args, "hydra.sweep.dir=sw")
    job = tmp_path / "sw" / "0"
    end = time.monotonic() + 120
    while not (job / "checkpoints" / "last.ckpt").exists():
        assert proc.poll() is None and time.monotonic() < end, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGSTOP)  # alive, holding its claim, mid-run, while we look
    try:
        resume = run_cli("train", f"resume={job}", cwd=tmp_path)
        again = run_cli(*args, "hydra.sweep.dir=sw", cwd=tmp_path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert resume.returncode == 2
    assert resume.stderr.strip() == (
        f"error: resume={job}: pid {proc.pid} on this host is training in it; wait for it to"
        " end (or stop it), then resume"
    )
    assert again.returncode == 0, again.stderr
    assert f"job 0: running in pid {proc.pid} on this host, skipped" in again.stdout
    assert "1 by another process" in again.stdout
    assert summary(job)["status"] == "running"  # what the SIGKILL left, untouched by both

    taken = run_cli(*args, "hydra.sweep.dir=sw", cwd=tmp_path)
    assert taken.returncode == 0, taken.stderr
    assert f"job 0: pid {proc.pid} on this host had claimed {job} and is gone: taken over" in (
        taken.stdout
    )
    assert "job 0: killed earlier, resumes from its last checkpoint" in taken.stdout
    assert summary(job)["metrics"] == summary(tmp_path / "reference" / "0")["metrics"]
    assert metrics_rows(job) == metrics_rows(tmp_path / "reference" / "0")
    assert not (job / CLAIM).exists()
    _no_temp_files(tmp_path)
