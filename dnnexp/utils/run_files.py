"""The files a run leaves behind, written atomically: summary.json is a contract other commands
and scripts rely on (status, metrics, best epoch, checkpoint). model_card.md (and the
confusion_matrix.png it links to) is for people: `training/model_card.py` writes it after."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

SUMMARY = "summary.json"


def write_json(path: Path, data: Any, allow_nan: bool = True) -> None:
    """Write to a temporary name, then rename: a reader never sees a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str, allow_nan=allow_nan) + "\n")
    os.replace(tmp, path)


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
