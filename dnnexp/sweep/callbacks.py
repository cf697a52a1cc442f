"""A Hydra callback that ends every multirun with the table of its failed jobs.

Jobs never raise into Hydra (plain Hydra would show only the first error, after the whole
sweep): each writes its status into its summary.json, and this callback reads them all.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dnnexp.utils.run_files import SUMMARY, SWEEP_ID

_failed: list[dict[str, Any]] = []


def failed_jobs() -> list[dict[str, Any]]:
    """The failed jobs of the multirun this process just finished (empty after a single run)."""
    return list(_failed)


def read_jobs(sweep_dir: Path) -> list[tuple[Path, dict[str, Any] | None]]:
    """(job dir, summary or None) for every numbered job dir, in job order."""
    dirs = [p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    jobs = []
    for job_dir in sorted(dirs, key=lambda p: int(p.name)):
        try:
            jobs.append((job_dir, json.loads((job_dir / SUMMARY).read_text())))
        except (OSError, ValueError):
            jobs.append((job_dir, None))
    return jobs


def search_failed(reason: str) -> None:
    """A search that ended without one completed trial: the command exits non-zero."""
    _failed.append({"job": "-", "overrides": "", "status": "failed", "error": reason})


class SweepReport(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _failed.clear()
        os.environ[SWEEP_ID] = f"{socket.gethostname()}:{os.getpid()}:{time.time()}"

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("search") is not None:
            return  # a search prints its own end (dnnexp.search.summary); failed trials are data
        from rich.markup import escape
        from rich.table import Table

        from dnnexp.utils.console import table_console

        sweep_dir = Path(str(config.hydra.sweep.dir))
        jobs = read_jobs(sweep_dir) if sweep_dir.is_dir() else []
        mine = os.environ.get(SWEEP_ID)
        here = reused = 0
        elsewhere: list[dict[str, str]] = []  # status: "completed by pid 12 on this host", ...
        for job_dir, summary in jobs:
            where = _ran_elsewhere(job_dir, summary, mine)
            status = (summary or {}).get("status", "no summary.json")
            overrides = " ".join((summary or {}).get("overrides", []))
            if where is not None and (where[0] == "running" or status == "completed"):
                what = "running in" if where[0] == "running" else "completed by"
                status = f"{what} {where[1]}"
                elsewhere.append({"job": job_dir.name, "overrides": overrides, "status": status})
            elif status == "completed":
                if summary.get("sweep_id") == mine:
                    here += 1
                else:
                    reused += 1
            else:
                if status == "running":  # and no live process holds it
                    status = "killed"
                by = f" (in {where[1]})" if where is not None else ""
                row = {"job": job_dir.name, "overrides": overrides, "status": status + by}
                _failed.append({**row, "error": (summary or {}).get("error", "")})
        console = table_console(stderr=bool(_failed))
        line = f"{here + reused} completed" + (
            f" ({reused} reused from an earlier run)" * bool(reused)
        )
        if elsewhere:
            line += f", {len(elsewhere)} by another process"
        console.print(
            f"[bold]sweep:[/bold] {len(jobs)} jobs, {escape(line)}, {len(_failed)} failed"
            f" -> {escape(str(sweep_dir))}",
            soft_wrap=True,
        )
        for title, rows, columns in (
            (
                "jobs another process ran",
                elsewhere,
                ("job", "overrides", "status"),
            ),
            ("failed jobs", _failed, ("job", "overrides", "status", "error")),
        ):
            if rows:
                table = Table(title=title, title_justify="left")
                for column in columns:
                    table.add_column(column, overflow="fold")
                for row in rows:
                    table.add_row(*(escape(str(row[c])) for c in columns))
                console.print(table)
        if here + reused or elsewhere:
            console.print(
                f"compare the variants: dnnexp report {escape(str(sweep_dir))}", soft_wrap=True
            )


def _ran_elsewhere(job_dir: Path, summary: dict | None, mine: str | None) -> tuple[str, str] | None:
    """("running", who) for a job another live process holds now; ("ran", who) for one that
    another process ran while this sweep was running; None for this sweep's own jobs and those
    reused from an earlier run."""
    from dnnexp.sweep.job import ran_by_other
    from dnnexp.utils.claims import holder

    held = holder(job_dir)
    if held is not None:
        return "running", held.describe()
    other = ran_by_other(summary, mine)
    return None if other is None else ("ran", other.describe())
