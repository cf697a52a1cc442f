"""A throw-away PostgreSQL server on loopback for the tests that share a study across workers.

Debian's `postgresql` package (installed by .ci/run) puts its binaries in
/usr/lib/postgresql/<version>/bin, off PATH. `initdb` refuses to run as root, so under root the
server runs as the package's `postgres` user, in a temporary dir that user owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _binaries() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """`postgresql://dnnexp@127.0.0.1:PORT/postgres` of a fresh server, stopped at the end."""
    bin_dir = _binaries()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL's binaries (initdb, pg_ctl) are missing: apt-get install postgresql"
        )
    user = "postgres" if os.geteuid() == 0 else None
    home = Path(tempfile.mkdtemp(prefix="dnnexp-pg-"))
    if user:
        shutil.chown(home, user=user)
    data, port = home / "data", _free_port()

    def run(*args: str) -> None:
        proc = subprocess.run(args, user=user, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{args[0]}: {proc.stdout[-1000:]}{proc.stderr[-1000:]}"

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "dnnexp", "-A", "trust", "--no-sync")
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(home / "log"), "-w",
        "start")  # fmt: skip
    try:
        yield f"postgresql://dnnexp@127.0.0.1:{port}/postgres"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)
