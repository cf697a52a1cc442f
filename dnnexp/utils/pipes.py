"""Output into a pipe whose reader has gone (`dnnexp train --help | head -1`): no traceback.

Python ignores SIGPIPE and raises BrokenPipeError at the next write or flush instead, wherever
it happens (Hydra's help, rich's tables, the interpreter's final flush). `reader_gone_quietly`
puts a stream in front of stdout that catches it: from then on, output goes to /dev/null (the
file descriptor too, so the final flush and child processes find nothing to fail on). A
command that only prints stops there, as Unix tools do on SIGPIPE, with their status (141); a
training run goes on to its end, so a closed terminal pipe never costs a run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

SIGPIPE_STATUS = 128 + signal.SIGPIPE  # what a shell reports for a process SIGPIPE ended


class ReaderGone(SystemExit):
    """Raised at the write that found the reader gone, by a command that only prints."""

    def __init__(self) -> None:
        super().__init__(SIGPIPE_STATUS)


class QuietPipe:
    """A text stream in front of `stream` that drops its output once the reader is gone."""

    def __init__(self, stream: Any, stop: bool) -> None:
        self._stream, self._stop = stream, stop
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._gone()

    def _gone(self) -> None:
        self.reader_gone = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)
        if self._stop:
            raise ReaderGone

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, buffer...
        return getattr(self._stream, name)


@contextlib.contextmanager
def reader_gone_quietly(stop: bool) -> Iterator[None]:
    """While the body runs, stdout (when it is the process's own, not a test's capture) is a
    QuietPipe. `stop`: end the command at the broken write (ReaderGone), else carry on."""
    stream = sys.stdout
    if stream is not sys.__stdout__ or stream is None:
        yield
        return
    quiet = QuietPipe(stream, stop)
    sys.stdout = quiet
    try:
        yield
    finally:
        sys.stdout = stream
        quiet.flush()  # what is still buffered, before the interpreter's own: may find the
        # reader gone only now (ReaderGone, with stop)
