"""A warm runner for the tests' `dnnexp` commands: `python -m dnnexp ARGS` without paying
`import lightning` (5-7 s on a 2-core CPU) per command.

A server imports dnnexp's heavy modules once and runs no torch operation itself (so no thread
pool exists when it forks). For each command, a client (`python tests/warm.py run ARGS`, a real
process with the caller's argv, cwd, environment, CPU affinity and stdin/stdout/stderr, which it
passes over a Unix socket) asks the server to fork; the forked child runs the command exactly as
`python -m dnnexp` would (`runpy`, `sys.exit` codes, uncaught exceptions as tracebacks) in a
fresh copy of the server, and its exit status becomes the client's. SIGINT and SIGTERM sent to
the client reach the command; a client that dies (a test's timeout) takes the command with it.

Tests that signal a dnnexp process or need it on a terminal start a real one instead.
DNNEXP_TEST_COLD=1 runs every command as a real process (to compare the two).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import sys

HEADER = struct.Struct("!Q")


def serve(path: str) -> None:
    import dnnexp.cli  # noqa: F401  (the heavy modules, imported once)
    import dnnexp.commands.train  # noqa: F401
    import dnnexp.training.run  # noqa: F401  (torch, lightning)

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        pid = os.fork()
        if pid == 0:
            server.close()
            _supervise(conn)  # never returns
        conn.close()
        while True:  # reap the supervisors that ended
            try:
                done, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if done == 0:
                break


def _supervise(conn: socket.socket) -> None:
    """In the forked child: read the request, fork the command, report its exit status."""
    try:
        head, fds, _, _ = socket.recv_fds(conn, HEADER.size, 3)
        (size,) = HEADER.unpack(head)
        body = b""
        while len(body) < size:
            body += conn.recv(size - len(body))
        request = json.loads(body)
        pid = os.fork()
        if pid == 0:
            conn.close()
            _run(request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        conn.sendall(f"{pid}\n".encode())
        while True:
            readable, _, _ = select.select([conn], [], [], 0.1)
            if readable and not conn.recv(64):  # the client is gone: so is its command
                _kill_group(pid, signal.SIGKILL)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
        _kill_group(pid, signal.SIGKILL)  # what the command left running (loky workers, ...)
        conn.sendall(f"{status}\n".encode())
    finally:
        os._exit(0)


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _run(request: dict, fds: list[int]) -> None:
    """In the command's process: become the client's `python -m dnnexp ARGS`, run it, exit."""
    import atexit
    import io
    import runpy
    import traceback

    os.setpgid(0, 0)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL if signum != signal.SIGPIPE else signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.umask(request["umask"])
    if request.get("affinity") and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, request["affinity"])
    # torch sized its thread pool for the server's cores at import: size it for this command's
    # as a new process would (OMP_NUM_THREADS, else the cores it may run on). Two OpenMP threads
    # spinning on one core are many times slower than one.
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or cores or 1))
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    for name, fd in (("stdin", 0), ("stdout", 1), ("stderr", 2)):  # as Python's startup makes them
        raw = io.FileIO(fd, "r" if fd == 0 else "w", closefd=False)
        if fd == 0:
            buffered = io.BufferedReader(raw)
        else:
            buffered = raw if unbuffered else io.BufferedWriter(raw)
        stream = io.TextIOWrapper(
            buffered,
            encoding="utf-8",
            errors="backslashreplace" if fd == 2 else "strict",
            line_buffering=fd == 2 or os.isatty(fd),
            write_through=unbuffered,
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)
    sys.path[0] = request["cwd"]  # as `python -m` puts the current dir first
    sys.argv = ["-m", *request["argv"]]
    code = 0
    try:
        runpy.run_module("dnnexp", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if not isinstance(stop.code, int) and stop.code is not None:
            print(stop.code, file=sys.stderr)
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 128 + signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    try:  # the interpreter's shutdown, in its order: threads (and what they registered), then atexit
        import threading

        threading._shutdown()  # e.g. joblib's loky executor stops its workers here
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def run(path: str, argv: list[str]) -> int:
    """The client: this process's argv, cwd, environment and stdio to the server; its command's
    exit status back."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    umask = os.umask(0)
    os.umask(umask)
    body = json.dumps(
        {
            "argv": argv,
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "umask": umask,
            "affinity": affinity,
        }  # fmt: skip
    ).encode()
    socket.send_fds(conn, [HEADER.pack(len(body))], [0, 1, 2])
    conn.sendall(body)
    reader = conn.makefile("r")
    pid = int(reader.readline())
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda s, f: _kill_group(pid, s))
    line = reader.readline()
    if not line:
        return 1
    status = int(line)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:  # run SOCKET ARGS...
        sys.exit(run(sys.argv[2], sys.argv[3:]))
