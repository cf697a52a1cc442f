"""The end of a search: the table of the top trials and `best.yaml`, a config that re-runs the
best trial with `dnnexp train --config-dir SWEEP_DIR --config-name best`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from dnnexp.config import conf_dir
from dnnexp.utils.run_files import write_text

BEST = "best.yaml"
TOP = 10
MAX_PARAM_COLUMNS = 4  # more searched keys: one column of overrides


def _groups() -> set[str]:
    return {p.name for p in conf_dir().iterdir() if p.is_dir()}


def private_runs(sweep_dir: Path) -> int:
    """The trials (and confirmation runs) of a search that trained with privacy=dp."""
    import json

    count = 0
    for path in sweep_dir.glob("*/summary.json"):
        try:
            count += isinstance(json.loads(path.read_text()).get("privacy"), dict)
        except (OSError, ValueError):
            continue
    return count


def ranked(study: Any, directions: list[str]) -> list[Any]:
    """Completed trials, best first (by the first objective)."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    sign = -1 if directions[0] == "maximize" else 1
    return sorted(done, key=lambda t: (sign * t.values[0], t.number))


def print_top(study: Any, metric: str, directions: list[str]) -> None:
    from rich.table import Table

    from dnnexp.utils.console import table_console

    trials = ranked(study, directions)
    if not trials:
        return
    keys = sorted({k for t in trials for k in t.params})
    table = Table(title=f"top trials by {metric} ({directions[0]})", title_justify="left")
    table.add_column("trial", justify="right")
    for name in ("value", "params") if len(directions) > 1 else ("value",):
        table.add_column(name, justify="right")
    leaves = [k.rsplit(".", 1)[-1] for k in keys]
    one_column = len(keys) > MAX_PARAM_COLUMNS  # an architecture search: each trial's own keys
    if one_column:
        table.add_column("overrides", overflow="fold")
    for key, leaf in zip(keys, leaves, strict=True) if not one_column else ():
        table.add_column(leaf if leaves.count(leaf) == 1 else key, overflow="fold")  # model.x -> x
    for trial in trials[:TOP]:
        values = [f"{v:.4g}" for v in trial.values]
        if one_column:
            cells = [" ".join(f"{k}={shown(v)}" for k, v in trial.params.items())]
        else:
            cells = [shown(trial.params.get(k)) for k in keys]
        table.add_row(str(trial.number), *values, *cells)
    table_console().print(table)


def print_failed(trials: list[Any]) -> None:
    from optuna.trial import TrialState
    from rich.table import Table

    from dnnexp.utils.console import table_console

    failed = [t for t in trials if t.state == TrialState.FAIL]
    if not failed:
        return
    table = Table(title="failed trials", title_justify="left")
    for column in ("trial", "params", "error"):
        table.add_column(column, overflow="fold")
    for trial in failed:
        params = " ".join(f"{k}={shown(v)}" for k, v in trial.params.items())
        table.add_row(str(trial.number), params, str(trial.user_attrs.get("error", "")))
    table_console(stderr=True).print(table)


def shown(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def best_config(overrides: list[str]) -> str:
    """A primary config that is `train` with these overrides: group choices become `override`
    entries of its defaults list, values become keys."""
    groups = _groups() - {"sweep"}
    defaults, values = ["train"], []
    for line in overrides:
        key, _, value = line.partition("=")
        key = key.lstrip("+")
        if key.startswith(("hydra.", "search.")) or key in ("sweep", "hydra"):
            continue
        if key in groups:
            defaults.append(f"override {key}: {value}")
        else:
            values.append(f"{key}={value}")
    body = OmegaConf.to_yaml(OmegaConf.from_dotlist(values)) if values else ""
    lines = ["defaults:", *[f"  - {d}" for d in defaults], "  - _self_", ""]
    return "\n".join(lines) + body


def write_best(study: Any, sweep_dir: Path, fixed: list[str], directions: list[str]) -> None:
    trials = ranked(study, directions)
    if not trials:
        return
    best = trials[0]
    overrides = [*fixed, *(f"{k}={v}" for k, v in best.params.items())]
    header = (
        f"# The best trial ({best.number}) of the search in {sweep_dir}, value"
        f" {best.values[0]:.6g} on validation data. Re-run it:\n"
        f"#   dnnexp train --config-dir {sweep_dir} --config-name best [seed=...]\n"
    )
    write_text(sweep_dir / BEST, header + best_config(overrides))
    print(f"best trial {best.number} -> {sweep_dir / BEST}")
