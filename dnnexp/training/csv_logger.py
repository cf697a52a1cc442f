"""`logger=csv`: one row per validation in <run dir>/metrics.csv, appended as each one ends, and
with `trainer.log_every_n_steps` one row per N optimizer steps in metrics_steps.csv.

Lightning's CSVLogger rewrites its file from memory and starts empty in a resumed run; this one
appends, and on resume starts from the rows the checkpoint holds (its history), so the rows
written after the checkpoint and lost with the run are not kept twice.
"""

from __future__ import annotations

import contextlib
import csv
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from dnnexp.utils.run_files import replacing, writing

STEPS = "metrics_steps.csv"
FIRST_COLUMNS = ("epoch", "step")


class CSVTable:
    """A CSV file that rows are appended to; a row with new keys rewrites it with more columns."""

    def __init__(self, path: Path, rows: list[dict[str, Any]] | None = None) -> None:
        self.path = Path(path)
        self.columns: list[str] = []
        if rows:
            self._add_columns(rows)
            self._rewrite(rows)
        elif self.path.exists():
            self.path.unlink()  # a fresh run in a dir Hydra just created: nothing to keep

    def append(self, row: dict[str, Any]) -> None:
        if set(row) - set(self.columns):
            old = []
            if self.columns and self.path.is_file():
                with self.path.open(newline="") as f:
                    old = list(csv.DictReader(f))
            self._add_columns([row])
            self._rewrite([*old, row])
            return
        with writing(self.path):
            size = self.path.stat().st_size if self.path.exists() else 0
            try:
                with self.path.open("a", newline="") as f:
                    csv.DictWriter(f, self.columns).writerow(row)
            except BaseException:  # a full disk: no half row, the file as it was
                with contextlib.suppress(OSError):
                    os.truncate(self.path, size)
                raise

    def _add_columns(self, rows: list[dict[str, Any]]) -> None:
        keys = {k for row in rows for k in row} - set(self.columns)
        first = [k for k in FIRST_COLUMNS if k in keys]
        self.columns += first + sorted(keys - set(first))

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        with replacing(self.path) as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows(rows)


def _read(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


class MetricsCSV(Logger):
    def __init__(
        self, path: Path, resume_rows: list[dict] | None = None, resume_step: int = 0
    ) -> None:
        """`resume_rows`/`resume_step`: the history and global step of the checkpoint a
        resumed run continues from."""
        super().__init__()
        self.path = Path(path)
        if rank_zero_only.rank != 0:
            return  # DDP: rank 0 writes the files
        steps_path = self.path.with_name(STEPS)
        steps = [r for r in _read(steps_path) if int(r["step"]) <= resume_step]
        self.validations = CSVTable(self.path, resume_rows)
        self.steps = CSVTable(steps_path, steps if resume_rows is not None else None)

    @property
    def name(self) -> str:
        return "csv"

    @property
    def version(self) -> str:
        return ""

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The config is in .hydra/config.yaml and in every checkpoint."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if "epoch" in metrics:  # a validation's row
            self.validations.append(metrics)
        elif "train/loss_step" in metrics:  # trainer.log_every_n_steps
            self.steps.append(metrics)
