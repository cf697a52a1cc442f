"""`logger=csv`: one row per epoch in <run dir>/metrics.csv, appended as each epoch ends.

Lightning's CSVLogger rewrites its file from memory and starts empty in a resumed run; this one
appends, and on resume keeps the rows of the epochs the checkpoint already holds.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only


class MetricsCSV(Logger):
    def __init__(self, path: Path, keep_epochs_below: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.columns: list[str] = []
        if keep_epochs_below is not None and self.path.is_file():
            with self.path.open(newline="") as f:
                reader = csv.DictReader(f)
                rows = [r for r in reader if int(r["epoch"]) < keep_epochs_below]
                self.columns = list(reader.fieldnames or [])
            self._rewrite(rows)
        elif self.path.exists():
            self.path.unlink()  # a fresh run in a dir Hydra just created: nothing to keep

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
        if "epoch" not in metrics:
            return  # dnnexp logs whole epochs only
        row = {k: metrics[k] for k in sorted(metrics, key=lambda k: (k != "epoch", k))}
        if set(row) - set(self.columns):
            old = []
            if self.columns and self.path.is_file():
                with self.path.open(newline="") as f:
                    old = list(csv.DictReader(f))
            self.columns = self.columns + [k for k in row if k not in self.columns]
            self._rewrite([*old, row])
            return
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow(row)

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.path)
