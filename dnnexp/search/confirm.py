"""The winner's curse, checked. The best trial's validation score is the largest of many noisy
numbers, so it overstates the winner. `search.confirm_seeds=K` re-trains the best config and
the starting config (the search's fixed overrides alone) on K fresh seeds and compares them on
the test split with the paired t-test of `dnnexp report`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dnnexp.utils.run_files import SUMMARY, write_json

CONFIRMATION = "confirmation.json"
FRESH_SEED = 1000  # confirmation seeds start here: never the seeds the search trained with
VARIANTS = ("start", "best")


def jobs(fixed: list[str], best_params: dict[str, Any], count: int) -> list[list[str]]:
    """The overrides of the 2 x count confirmation jobs, in `confirm/<variant>-<seed>/`."""
    base = [o for o in fixed if not o.split("=", 1)[0].lstrip("+") == "seed"]
    params = {"start": [], "best": [f"{k}={v}" for k, v in best_params.items()]}
    return [
        [*base, *params[variant], f"seed={seed}", f"hydra.sweep.subdir=confirm/{variant}-{seed}"]
        for variant in VARIANTS
        for seed in range(FRESH_SEED, FRESH_SEED + count)
    ]


def held_elsewhere(sweep_dir: Path, jobs: list[list[str]]) -> Any:
    """The live process (another worker of the search) that still holds one of these jobs'
    dirs, if any (dnnexp.utils.claims)."""
    from dnnexp.utils.claims import holder

    for overrides in jobs:
        subdir = next(o.split("=", 1)[1] for o in overrides if o.startswith("hydra.sweep.subdir="))
        found = holder(sweep_dir / subdir)
        if found is not None:
            return found
    return None


def compare_runs(sweep_dir: Path, count: int, best: Any, metric: str) -> dict[str, Any]:
    """Read the confirmation runs, compare best against start, write confirmation.json."""
    from dnnexp.config.metrics import headline, summary_task
    from dnnexp.stats import compare, describe

    values: dict[str, list[tuple[int, float]]] = {v: [] for v in VARIANTS}
    task: Any = "classification"
    for variant in VARIANTS:
        for seed in range(FRESH_SEED, FRESH_SEED + count):
            path = sweep_dir / "confirm" / f"{variant}-{seed}" / SUMMARY
            try:
                summary = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if summary.get("status") != "completed":
                continue
            task = summary_task(summary)
            value = summary.get("metrics", {}).get(headline(task))
            if value is not None:
                values[variant].append((seed, float(value)))
    shown = headline(task)
    result = compare(values["start"], values["best"])
    confirmation = {
        "metric": shown,
        "best_trial": best.number,
        "best_validation": {"metric": metric, "value": best.values[0]},
        "seeds": list(range(FRESH_SEED, FRESH_SEED + count)),
        **{v: {**vars(describe([x for _, x in values[v]])), "values": values[v]} for v in VARIANTS},
        "delta": result.delta,
        "ci_low": result.ci_low,
        "ci_high": result.ci_high,
        "p_value": result.p_value,
        "test": result.test,
    }
    write_json(sweep_dir / CONFIRMATION, confirmation)
    return confirmation


def _number(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def confirmation_table(confirmation: dict[str, Any]) -> Any:
    from rich.table import Table

    metric = confirmation["metric"]
    table = Table(
        title=f"confirmation on {len(confirmation['seeds'])} fresh seeds ({metric}, test split)",
        title_justify="left",
    )
    for column in ("config", "n", "mean", "SD", "95% CI"):
        table.add_column(column, justify="left" if column == "config" else "right")
    for variant in VARIANTS:
        row = confirmation[variant]
        ci = f"[{_number(row['ci_low'])}, {_number(row['ci_high'])}]"
        name = f"best (trial {confirmation['best_trial']})" if variant == "best" else "start"
        table.add_row(name, str(row["n"]), _number(row["mean"]), _number(row["std"]), ci)
    return table


def confirmation_line(confirmation: dict[str, Any]) -> str:
    """The best validation score next to the confirmed test difference with its CI."""
    validation, c = confirmation["best_validation"], confirmation
    return (
        f"best trial's {validation['metric']} in the search: {validation['value']:.4f};"
        f" confirmed Δ {c['metric']} best - start: {_number(c['delta'])}"
        f" [{_number(c['ci_low'])}, {_number(c['ci_high'])}],"
        f" p = {_number(c['p_value'])} ({c['test'] or 'no test'})"
    )


def print_confirmation(confirmation: dict[str, Any]) -> None:
    from dnnexp.utils.console import table_console

    console = table_console()
    console.print(confirmation_table(confirmation))
    console.print(confirmation_line(confirmation))
