"""Find the run dirs under a path, read what each left behind, and group the runs into variants
that differ only in their seed and, under k-fold cross-validation, their fold."""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnnexp.config.metrics import TASK_SCORE, summary_task, task_score
from dnnexp.config.overrides import is_seed, is_unit
from dnnexp.utils.run_files import METRICS_CSV, SUMMARY

NO_SUMMARY = "no summary.json"
SKIP_DIRS = {"checkpoints", "lightning_logs", "tensorboard", "eval", "__pycache__"}


class ReportError(Exception):
    """A problem with the input or the options: `dnnexp report` prints it as one line."""


@dataclass
class Run:
    """One job: its dir, what its summary.json says and its per-epoch history (metrics.csv)."""

    dir: Path
    rel: str  # the dir relative to the report's root ("." for the root itself)
    status: str
    task: str = "classification"
    seed: int | None = None
    overrides: list[str] | None = None  # None: unknown (no summary field, no .hydra file)
    fold: int | None = None  # k-fold cross-validation: data.fold (None: no folds)
    folds: int | None = None  # and data.folds
    metrics: dict[str, float] = field(default_factory=dict)
    best_epoch: int | None = None
    epochs: int | None = None
    duration_s: float | None = None
    params: int | None = None
    error: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    pruning: dict[str, Any] | None = None  # summary.json's "pruning" (sparsity, before, ...)
    privacy: dict[str, Any] | None = None  # summary.json's "privacy": the ledger (privacy=dp)
    tags: list[str] = field(default_factory=list)  # summary.json's "tags" (the run's `tags=`)
    score: str = "val/acc"  # its score (the task's; multitask: task.score, val/<head>/<metric>)
    heads: list[dict[str, Any]] = field(default_factory=list)  # multitask: summary's "heads"

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def unit(self) -> int | tuple[int, int] | None:
        """What pairs it with a run of another variant: its seed, or (seed, fold) under k-fold
        cross-validation (folds pair like seeds); None when the seed is unknown."""
        if self.seed is None:
            return None
        return self.seed if self.fold is None else (self.seed, self.fold)


@dataclass
class Variant:
    """Runs with the same overrides apart from the seed and the fold."""

    name: str
    overrides: list[str]  # the overrides that set it apart from the other variants
    runs: list[Run]


def natural_key(rel: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key that puts job dir 10 after 9 (numbers compared as numbers)."""
    chunks = re.split(r"(\d+)", rel)
    return tuple((0, int(c), "") if c.isdigit() else (1, 0, c) for c in chunks if c)


def find_runs(root: Path) -> list[Run]:
    """Every run dir under root (root included), read, in job/dir order.

    A numbered job dir of a multirun that has no summary.json (the job died before writing it)
    is kept as a run with status 'no summary.json', but only next to real run dirs."""
    root = Path(root)
    if not root.exists():
        raise ReportError(f"{root} does not exist")
    if not root.is_dir():
        raise ReportError(f"{root} is not a directory (give a sweep dir or a run dir)")
    found: list[Path] = []
    orphans: list[Path] = []
    for current, dirs, files in os.walk(root):
        here = Path(current)
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS]
        if SUMMARY in files:
            found.append(here)
        elif here.name.isdigit() and (here.parent / "multirun.yaml").is_file():
            orphans.append(here)
    if not found:
        raise ReportError(f"no run dirs (dirs holding {SUMMARY}) under {root}")
    runs = [read_run(d, root) for d in found] + [_orphan(d, root) for d in orphans]
    return sorted(runs, key=lambda r: natural_key(r.rel))


def read_run(run_dir: Path, root: Path) -> Run:
    """A Run from run_dir/summary.json, falling back to .hydra/ for overrides and seed."""
    rel = _rel(run_dir, root)
    try:
        summary = json.loads((run_dir / SUMMARY).read_text())
    except (OSError, ValueError) as err:
        summary = {"status": "unreadable", "error": f"{SUMMARY}: {err}"}
    if not isinstance(summary, dict):
        summary = {"status": "unreadable", "error": f"{SUMMARY} is not a JSON object"}
    overrides = summary.get("overrides")
    if not (isinstance(overrides, list) and all(isinstance(o, str) for o in overrides)):
        overrides = read_overrides(run_dir)
    if overrides is not None:  # Hydra's sweeper escapes interpolations: show them as typed
        overrides = [o.replace("\\{", "{").replace("\\}", "}") for o in overrides]
    seed = summary.get("seed")
    if not _is_int(seed):
        seed = seed_from(overrides, run_dir)
    fold, folds = folds_from(overrides, run_dir)
    raw_metrics = summary.get("metrics")
    metrics = {
        str(k): float(v)
        for k, v in (raw_metrics.items() if isinstance(raw_metrics, dict) else [])
        if _is_number(v)
    }
    error = summary.get("error")
    status = str(summary.get("status") or "unknown")
    if status == "running":  # still training, or killed: its claim tells (utils/claims.py)
        from dnnexp.utils.claims import holder

        training = holder(run_dir)
        if training is None:
            status = "killed"
        else:
            error = error or f"still training, in {training.describe()}"
    return Run(
        dir=run_dir,
        rel=rel,
        status=status,
        task=summary["task"] if summary.get("task") in TASK_SCORE else "classification",
        seed=seed,
        overrides=overrides,
        fold=fold,
        folds=folds,
        metrics=metrics,
        best_epoch=summary["best_epoch"] if _is_int(summary.get("best_epoch")) else None,
        epochs=summary["epochs"] if _is_int(summary.get("epochs")) else None,
        duration_s=float(summary["duration_s"]) if _is_number(summary.get("duration_s")) else None,
        params=summary["params"] if _is_int(summary.get("params")) else None,
        error=str(error) if error else None,
        history=read_history(run_dir / METRICS_CSV),
        pruning=summary["pruning"] if isinstance(summary.get("pruning"), dict) else None,
        privacy=summary["privacy"] if isinstance(summary.get("privacy"), dict) else None,
        tags=[str(t) for t in summary.get("tags") or [] if isinstance(t, (str, int, float))],
        score=task_score(summary_task(summary)),
        heads=[h for h in summary.get("heads") or [] if isinstance(h, dict) and "name" in h],
    )


def with_tags(runs: list[Run], tags: list[str], root: Path) -> list[Run]:
    """The runs that carry every one of `tags` (`dnnexp report --tags a,b`)."""
    kept = [r for r in runs if set(tags) <= set(r.tags)]
    if not kept:
        found = sorted({t for r in runs for t in r.tags})
        listed = ", ".join(found) if found else "none (set them with tags=[a,b] when training)"
        raise ReportError(
            f"no run under {root} has the tags {', '.join(tags)}; tags found: {listed}"
        )
    return kept


def _orphan(job_dir: Path, root: Path) -> Run:
    overrides = read_overrides(job_dir)
    fold, folds = folds_from(overrides, job_dir)
    return Run(
        dir=job_dir,
        rel=_rel(job_dir, root),
        status=NO_SUMMARY,
        seed=seed_from(overrides, job_dir),
        overrides=overrides,
        fold=fold,
        folds=folds,
        error="the job ended before writing summary.json (see its log)",
    )


def read_overrides(run_dir: Path) -> list[str] | None:
    """The job's overrides from .hydra/overrides.yaml, or None when missing or unreadable."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    try:
        from omegaconf import OmegaConf

        loaded = OmegaConf.to_container(OmegaConf.load(path))
    except Exception:  # noqa: BLE001 - a damaged file only means "overrides unknown"
        return None
    return [str(o) for o in loaded] if isinstance(loaded, list) else None


def seed_from(overrides: list[str] | None, run_dir: Path) -> int | None:
    """The seed from a seed=N override, else from the top-level seed: of .hydra/config.yaml."""
    for override in overrides or []:
        value = override.partition("=")[2]
        if is_seed(override) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
    try:
        text = (run_dir / ".hydra" / "config.yaml").read_text()
    except OSError:
        return None
    match = re.search(r"^seed:\s*(-?\d+)\s*$", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def folds_from(overrides: list[str] | None, run_dir: Path) -> tuple[int | None, int | None]:
    """(data.fold, data.folds) of a k-fold run from its overrides, else from the data section
    of .hydra/config.yaml; (None, None) without folds (data.folds null or unknown)."""
    found: dict[str, int | None] = {}
    for override in overrides or []:
        key, _, value = override.partition("=")
        key = key.strip().lstrip("+~")
        if key in ("data.fold", "data.folds"):
            found[key] = int(value) if re.fullmatch(r"\s*\d+\s*", value) else None
    if "data.folds" not in found or "data.fold" not in found:
        try:
            text = (run_dir / ".hydra" / "config.yaml").read_text()
        except OSError:
            text = ""
        data = re.search(r"^data:\n((?:[ \t]+.*\n?)*)", text, re.MULTILINE)
        for key in ("data.fold", "data.folds"):
            leaf = key.split(".")[1]
            match = data and re.search(rf"^\s+{leaf}:\s*(\d+)\s*$", data.group(1), re.MULTILINE)
            if key not in found and match:
                found[key] = int(match.group(1))
    folds = found.get("data.folds")
    if folds is None:
        return None, None
    return found.get("data.fold", 0), folds


def read_history(path: Path) -> list[dict[str, float]]:
    """metrics.csv as one dict per epoch (rows of the same epoch merged), [] when unusable."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
    by_epoch: dict[int, dict[str, float]] = {}
    for index, row in enumerate(rows):
        values = {}
        for key, cell in row.items():
            if key is None or cell in (None, ""):
                continue
            try:
                values[key] = float(cell)
            except (TypeError, ValueError):
                continue
        epoch = values.get("epoch")
        epoch_i = int(epoch) if epoch is not None and math.isfinite(epoch) else index
        by_epoch.setdefault(epoch_i, {"epoch": float(epoch_i)}).update(values)
    return [by_epoch[e] for e in sorted(by_epoch)]


def group(runs: list[Run]) -> list[Variant]:
    """Variants: runs whose overrides match once seed=..., data.fold=... and the overrides every
    run shares are dropped. Named by the remaining overrides; in the order of their first run.
    A job that did not complete and whose overrides are unknown belongs to no variant."""
    known = [set(r.overrides) for r in runs if r.overrides is not None]
    shared = set.intersection(*known) if known else set()
    members: dict[tuple[str, ...] | None, list[Run]] = {}
    distinct: dict[tuple[str, ...] | None, list[str]] = {}
    for run in runs:
        if run.overrides is None and not run.completed:
            continue  # nothing to compare it with: only listed among the jobs not completed
        if run.overrides is None:
            key = None
            own: list[str] = []
        else:
            own = [o for o in run.overrides if not is_unit(o) and o not in shared]
            key = tuple(sorted(set(own)))
        members.setdefault(key, []).append(run)
        distinct.setdefault(key, own)
    variants = []
    for key, key_runs in members.items():
        if len(members) == 1:
            name = "(all runs)"
        elif key is None:
            name = "(overrides unknown)"
        else:
            name = " ".join(distinct[key]) or "(no distinguishing overrides)"
        variants.append(Variant(name=name, overrides=list(distinct[key]), runs=key_runs))
    return variants


def default_baseline(variants: list[Variant]) -> Variant:
    """The one variant with an override whose value is `none` (e.g. reg=none), else the first."""
    with_none = [
        v
        for v in variants
        if any(o.partition("=")[2].strip().lower() == "none" for o in v.overrides)
    ]
    return with_none[0] if len(with_none) == 1 else variants[0]


def pick_baseline(variants: list[Variant], name: str | None) -> Variant:
    """The variant called name (error listing the names when there is none), or the default."""
    if name is None:
        return default_baseline(variants)
    for variant in variants:
        if variant.name == name:
            return variant
    names = ", ".join(f"'{v.name}'" for v in variants)
    raise ReportError(f"unknown baseline '{name}'; the variants are: {names}")


def _rel(path: Path, root: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return rel or "."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
