"""A Hydra callback that ends every multirun with the table of its failed jobs.

Jobs never raise into Hydra (plain Hydra would show only the first error, after the whole
sweep): each writes its status into its summary.json, and this callback reads them all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dnnexp.utils.run_files import SUMMARY

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

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("search") is not None:
            return  # a search prints its own end (dnnexp.search.summary); failed trials are data
        from rich.console import Console
        from rich.table import Table

        sweep_dir = Path(str(config.hydra.sweep.dir))
        jobs = read_jobs(sweep_dir) if sweep_dir.is_dir() else []
        for job_dir, summary in jobs:
            if summary is None or summary.get("status") != "completed":
                _failed.append(
                    {
                        "job": job_dir.name,
                        "overrides": " ".join((summary or {}).get("overrides", [])),
                        "status": (summary or {}).get("status", "no summary.json"),
                        "error": (summary or {}).get("error", ""),
                    }
                )
        console = Console(stderr=bool(_failed))
        reused = sum(1 for _, s in jobs if s and s.get("reused"))
        done = len(jobs) - len(_failed)
        console.print(
            f"[bold]sweep:[/bold] {len(jobs)} jobs, {done} completed"
            + (f" ({reused} reused from an earlier run)" if reused else "")
            + f", {len(_failed)} failed -> {sweep_dir}"
        )
        if _failed:
            table = Table(title="failed jobs", title_justify="left")
            for column in ("job", "overrides", "status", "error"):
                table.add_column(column, overflow="fold")
            for row in _failed:
                table.add_row(row["job"], row["overrides"], row["status"], row["error"])
            console.print(table)
        if done:
            console.print(f"compare the variants: dnnexp report {sweep_dir}")
