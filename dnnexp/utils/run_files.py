"""The files a run leaves behind, written atomically: summary.json is a contract other commands
and scripts rely on (status, metrics, best epoch, checkpoint). model_card.md (and the
confusion_matrix.png it links to) is for people: `training/model_card.py` writes it after."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# a run dir's files, by the names every command reads them under
SUMMARY = "summary.json"
METRICS_CSV = "metrics.csv"  # one row per validation (training/csv_logger.py)
BEST_CKPT = "checkpoints/best.ckpt"
LAST_CKPT = "checkpoints/last.ckpt"
# set by each `dnnexp train -m` for its jobs (its launchers' workers inherit it): a job's
# summary.json says which invocation ran it, so that several processes sharing one sweep dir
# each tell the jobs they ran from those the others ran
SWEEP_ID = "DNNEXP_SWEEP_ID"


class WriteFailed(Exception):
    """A file of a run could not be written: a full disk, a quota, a vanished mount. Raised by
    every writer of a run's files (`writing`), with the file and the reason, so the run can end
    with one line that names them."""

    def __init__(self, path: Path, error: OSError) -> None:
        self.path = Path(path)
        text = error.strerror or str(error) or type(error).__name__
        self.reason = text[:1].lower() + text[1:]
        self.out_of_space = error.errno in (errno.ENOSPC, errno.EDQUOT)
        super().__init__(f"cannot write {self.path}: {self.reason}")


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError raised while writing `path` (also one that a library wrapped, as
    torch.save does in a RuntimeError) into WriteFailed naming the file."""
    try:
        yield
    except WriteFailed:
        raise
    except Exception as err:
        os_error = _os_error_in(err)
        if os_error is None:
            raise
        raise WriteFailed(path, os_error) from err


def write_failure(err: BaseException | None) -> WriteFailed | None:
    """The WriteFailed behind err (itself, or what it was raised from or while handling)."""
    return _behind(err, WriteFailed)


def _os_error_in(err: BaseException | None) -> OSError | None:
    return _behind(err, OSError)


def _behind(err: BaseException | None, kind: type) -> Any:
    for _ in range(20):
        if err is None or isinstance(err, kind):
            return err
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
    return None


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write; renamed over `path` when the block ends, so a
    reader never sees a half-written file, and removed if the block fails (WriteFailed for an
    OSError)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with writing(path):
        try:
            yield tmp
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise


def write_text(path: Path, text: str) -> None:
    """Write a whole text file atomically (`replacing`)."""
    with replacing(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data: Any, allow_nan: bool = True) -> None:
    write_text(path, json.dumps(data, indent=2, default=str, allow_nan=allow_nan) + "\n")


def code_version() -> dict[str, Any] | None:
    """The git commit of the dnnexp code that ran (and whether it had local changes), if the
    code lives in a git checkout."""
    import subprocess

    src = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no", "."],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"git_commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def versions() -> dict[str, str]:
    import lightning
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
    }


def unique_path(path: Path) -> Path:
    """`path`, or path-1, path-2, ... if it exists: an earlier output is never overwritten."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate
