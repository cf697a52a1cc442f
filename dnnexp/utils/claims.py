"""Who is writing into a run dir. A process claims a dir before it trains there by creating
`.claim.json` (host, pid, start time) atomically, and removes it when it ends, whatever the
outcome. A second process finds the claim and stays out: a sweep job skips the dir, a resume or
a run into it is refused. A claim whose process is gone (SIGKILL, a power cut) is taken over,
with the temporary files that process left, but only on the host that made it: only that host
can tell its process is gone.

The search's killed-trial recovery asks the same question of a worker (`alive`)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

CLAIM = ".claim.json"


@dataclass(frozen=True)
class Holder:
    """The process that holds a claim."""

    host: str
    pid: int
    started: float = 0.0  # time.time() when the claim was made
    process_start: str | None = None  # the kernel's start time of that pid (pid reuse)
    boot: str | None = None  # the host's boot id (a reboot ends every process)

    @classmethod
    def me(cls) -> Holder:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, time.time(), _process_start(pid), _boot_id())

    @property
    def local(self) -> bool:
        return self.host == socket.gethostname()

    def alive(self) -> bool:
        """Whether this holder may still be running (see `alive`)."""
        return alive(self.host, self.pid, self.process_start, self.boot)

    def describe(self) -> str:
        """'pid 1234 on this host' / 'pid 1234 on host node7'."""
        return f"pid {self.pid} on " + ("this host" if self.local else f"host {self.host}")


def alive(host: str, pid: int, process_start: str | None = None, boot: str | None = None) -> bool:
    """False only when the process ran on this host and is gone (also after a reboot, or when
    its pid now belongs to another process); another host's process is never judged gone."""
    if host != socket.gethostname():
        return True
    if boot is not None and boot != _boot_id():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by another user
    return process_start is None or _process_start(pid) in (None, process_start)


def holder(run_dir: Path) -> Holder | None:
    """The live or remote holder of run_dir's claim; None when it is free or its holder died
    here (a stale claim, which `claim` takes over)."""
    found = _read(Path(run_dir) / CLAIM)
    return found if found is not None and found.alive() else None


class Claim:
    """`Claim(run_dir).acquire()` is None when this process now holds run_dir, or the Holder
    that keeps it; `release()` removes this process's claim (and only its own)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / CLAIM
        self.held = False
        self.took_over: Holder | None = None  # the dead holder whose claim this one replaced

    def acquire(self) -> Holder | None:
        me = Holder.me()
        for _ in range(5):
            if self._create(me):
                self.held = True
                return None
            with _takeover_lock(self.path):  # one process at a time judges a claim stale
                found = _read(self.path)
                if found is None and self.path.exists():
                    return _unreadable(self.path)
                if found is not None:
                    if found.alive():
                        return found
                    self.path.unlink(missing_ok=True)
                    self.took_over = found
                    _remove_leftovers(self.path.parent)
                if self._create(me):
                    self.held = True
                    return None
        return _read(self.path) or _unreadable(self.path)

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        found = _read(self.path)
        if found is not None and (found.host, found.pid) == (socket.gethostname(), os.getpid()):
            with contextlib.suppress(OSError):
                self.path.unlink()

    def _create(self, me: Holder) -> bool:
        """Write the claim to a temporary file, then link it into place: link() fails if the
        claim exists, so exactly one process creates it, and nobody reads it half-written."""
        tmp = self.path.with_name(f"{CLAIM}.{me.host}.{me.pid}.tmp")
        try:
            tmp.write_text(json.dumps(asdict(me)))
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _remove_leftovers(run_dir: Path) -> None:
    """The temporary files a killed holder left (a write cut off before its rename: every
    file of a run is written as .NAME.*.tmp first, see utils/run_files.py)."""
    for tmp in [*run_dir.glob(".*.tmp"), *run_dir.glob("*/.*.tmp")]:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _unreadable(path: Path) -> Holder:
    """A claim file that is not ours to parse: treated as held, never removed automatically."""
    return Holder(host=f"unknown (unreadable {path})", pid=0)


def _read(path: Path) -> Holder | None:
    try:
        data = json.loads(path.read_text())
        return Holder(
            host=str(data["host"]),
            pid=int(data["pid"]),
            started=float(data.get("started", 0.0)),
            process_start=data.get("process_start"),
            boot=data.get("boot"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def _takeover_lock(claim: Path) -> Iterator[None]:
    """An exclusive lock on the run dir itself (no lock file to leave behind)."""
    import fcntl

    fd = os.open(claim.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` in clock ticks since boot (Linux), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
