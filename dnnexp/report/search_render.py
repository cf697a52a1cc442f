"""A search's report on the terminal and on disk: report.md, report.csv (one row per trial),
report.json, search_history.png (the objective over trials, with the best so far) and, for two
objectives, pareto_front.png."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dnnexp.report.html import to_html
from dnnexp.report.search import EVALUATORS, SearchReport, TrialRow
from dnnexp.utils import run_files

STATE_STYLE = {"complete": "green", "pruned": "yellow", "fail": "red", "running": "cyan"}
HISTORY_PNG = "search_history.png"
PARETO = "pareto_front.png"


def _significant(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def params_text(params: dict[str, Any]) -> str:
    from dnnexp.search.summary import shown

    return " ".join(f"{k}={shown(v)}" for k, v in params.items())


def headline(report: SearchReport) -> str:
    counts = ", ".join(
        f"{report.count(s)} {word}"
        for s, word in (
            ("complete", "complete"),
            ("pruned", "pruned"),
            ("fail", "failed"),
            ("running", "running"),
        )  # fmt: skip
        if report.count(s) or s == "complete"
    )
    pairs = zip(report.objectives, report.directions, strict=True)
    goal = " and ".join(f"{name} ({direction})" for name, direction in pairs)
    return (
        f"search {report.study_name!r}: {len(report.trials)} of {report.n_trials} trials"
        f" ({counts}); objective {goal}, on validation data"
    )


def _values(trial: TrialRow, report: SearchReport) -> list[str]:
    if trial.values:
        return [_significant(v) for v in trial.values]
    return ["-"] * len(report.directions)


def trials_table(report: SearchReport) -> Table:
    table = Table(title="trials", title_justify="left")
    table.add_column("trial", justify="right")
    table.add_column("state")
    for name in report.objectives:
        table.add_column(name, justify="right")
    for name in ("epochs", "s"):
        table.add_column(name, justify="right")
    table.add_column("overrides", overflow="fold")
    table.add_column("error", overflow="fold")
    for trial in report.trials:
        best = trial.number in report.best
        table.add_row(
            str(trial.number) + (" *" if best else ""),
            Text(trial.state, style=STATE_STYLE.get(trial.state, "")),
            *_values(trial, report),
            _significant(trial.epochs),
            _significant(trial.duration_s, 2),
            params_text(trial.params),
            trial.error or "",
            style="bold" if best else None,
        )
    return table


def importance_table(report: SearchReport) -> Table:
    table = Table(title=f"parameter importance for {report.metric}", title_justify="left")
    table.add_column("param")
    for name in EVALUATORS:
        table.add_column(name, justify="right")
    for param, values in report.importance.items():
        table.add_row(param, *[_significant(values.get(name), 3) for name in EVALUATORS])
    return table


def front_table(report: SearchReport) -> Table:
    table = Table(title=f"Pareto front: {report.metric} against parameters", title_justify="left")
    for name in ("trial", report.metric, "params"):
        table.add_column(name, justify="right")
    table.add_column("overrides", overflow="fold")
    front = [t for t in report.trials if t.number in report.best]
    for trial in sorted(front, key=lambda t: t.values[1]):
        table.add_row(str(trial.number), *_values(trial, report), params_text(trial.params))
    return table


def print_search(report: SearchReport, console: Console) -> None:
    from dnnexp.search.confirm import confirmation_line, confirmation_table

    console.print(headline(report))
    console.print(trials_table(report))
    star = "* the Pareto front" if len(report.directions) > 1 else "* the best trial"
    console.print(Text(f"{star}; s: wall time of the trial", style="dim"))
    if len(report.directions) > 1 and report.best:
        console.print(front_table(report))
    if report.importance:
        console.print(importance_table(report))
    for note in report.notes:
        console.print(Text(note, style="dim"))
    if report.confirmation:
        console.print(confirmation_table(report.confirmation))
        console.print(confirmation_line(report.confirmation))


def _md(headers: list[str], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    return [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join("---" for _ in headers) + " |",
        *["| " + " | ".join(cell(c) for c in row) + " |" for row in rows],
    ]


def markdown(report: SearchReport, images: list[str]) -> str:
    from dnnexp.search.confirm import confirmation_line

    head = ["trial", "state", *report.objectives, "epochs", "s", "overrides", "error"]
    rows = [
        [
            f"**{t.number}**" if t.number in report.best else str(t.number),
            t.state,
            *_values(t, report),
            _significant(t.epochs),
            _significant(t.duration_s, 2),
            params_text(t.params),
            t.error or "",
        ]
        for t in report.trials
    ]
    lines = [f"# Search report: {report.root}", "", headline(report) + ".", ""]
    marked = "the Pareto front" if len(report.directions) > 1 else "the best trial"
    lines += [f"Storage: `{_redacted(report.storage)}`. Bold: {marked}.", ""]
    lines += ["## Trials", "", *_md(head, rows)]
    if report.importance:
        lines += ["", f"## Parameter importance for {report.metric}", ""]
        lines += _md(
            ["param", *EVALUATORS],
            [
                [p, *[_significant(v.get(e), 3) for e in EVALUATORS]]
                for p, v in report.importance.items()
            ],
        )
    if report.notes:
        lines += ["", *[f"- {note}" for note in report.notes]]
    if report.confirmation:
        c = report.confirmation
        lines += ["", f"## Confirmation on {len(c['seeds'])} fresh seeds ({c['metric']}, test)", ""]
        lines += _md(
            ["config", "n", "mean", "SD", "95% CI"],
            [
                [
                    name,
                    str(c[v]["n"]),
                    _significant(c[v]["mean"]),
                    _significant(c[v]["std"]),
                    f"[{_significant(c[v]['ci_low'])}, {_significant(c[v]['ci_high'])}]",
                ]  # fmt: skip
                for v, name in (("start", "start"), ("best", f"best (trial {c['best_trial']})"))
            ],
        )
        lines += ["", confirmation_line(c)]
    if images:
        lines += ["", "## Plots", "", *[f"![{Path(p).stem}]({p})" for p in images]]
    return "\n".join(lines) + "\n"


def _redacted(url: str) -> str:
    from dnnexp.search.study import redact

    return redact(url)


def write_csv(report: SearchReport, path: Path) -> None:
    keys = sorted({k for t in report.trials for k in t.params})
    columns = ["trial", "state", *report.objectives, "epochs", "duration_s", *keys, "error", "dir"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for t in report.trials:
            values = dict(zip(report.objectives, t.values or [], strict=False))
            writer.writerow(
                {"trial": t.number, "state": t.state, **values, "epochs": t.epochs,
                 "duration_s": t.duration_s, **t.params, "error": t.error or "", "dir": t.dir}
            )  # fmt: skip


def as_json(report: SearchReport) -> dict[str, Any]:
    return {
        "study": report.study_name,
        "storage": _redacted(report.storage),
        "objectives": [
            {"name": o, "direction": d}
            for o, d in zip(report.objectives, report.directions, strict=True)
        ],
        "n_trials": report.n_trials,
        "counts": {s: report.count(s) for s in ("complete", "pruned", "fail", "running")},
        "best": report.best,
        "trials": [vars(t) for t in report.trials],
        "importance": report.importance,
        "notes": report.notes,
        "confirmation": report.confirmation,
    }


def plot_history(report: SearchReport, path: Path) -> bool:
    """The first objective of every finished trial by trial number, pruned trials at their last
    validation, and the best so far as a step line. False (nothing written) before any."""
    from dnnexp.report.plots import pyplot

    done = [t for t in report.trials if t.state == "complete"]
    pruned = [t for t in report.trials if t.state == "pruned" and t.last_value is not None]
    if not done and not pruned:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if done:
        xs, ys = [t.number for t in done], [t.values[0] for t in done]
        ax.scatter(xs, ys, s=22, color="tab:blue", label="completed", zorder=3)
        better = max if report.directions[0] == "maximize" else min
        best, so_far = ys[0], []
        for y in ys:
            best = better(best, y)
            so_far.append(best)
        ax.step([*xs, report.trials[-1].number], [*so_far, so_far[-1]], where="post",
                color="tab:green", lw=1.8, label="best so far")  # fmt: skip
    if pruned:
        ax.scatter([t.number for t in pruned], [t.last_value for t in pruned], marker="x",
                   s=24, color="tab:gray", label="pruned (last validation)", zorder=2)  # fmt: skip
    ax.set_xlabel("trial")
    ax.xaxis.get_major_locator().set_params(integer=True)  # trial numbers, not 0.5
    return _save(fig, ax, path, report, f"{report.metric} over trials")


def plot_pareto(report: SearchReport, path: Path) -> bool:
    """Two objectives: the metric against the parameter count, the Pareto front joined."""
    from dnnexp.report.plots import pyplot

    done = [t for t in report.trials if t.state == "complete" and len(t.values or []) == 2]
    if len(report.directions) != 2 or not done:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([t.values[1] for t in done], [t.values[0] for t in done], s=20,
               color="tab:gray", alpha=0.6, label="trials")  # fmt: skip
    front = sorted((t for t in done if t.number in report.best), key=lambda t: t.values[1])
    ax.plot([t.values[1] for t in front], [t.values[0] for t in front], "o-",
            color="tab:red", label="Pareto front", zorder=3)  # fmt: skip
    for t in front:
        ax.annotate(str(t.number), (t.values[1], t.values[0]), fontsize=8,
                    textcoords="offset points", xytext=(4, 4))  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    return _save(fig, ax, path, report, "Pareto front")


def _save(fig: Any, ax: Any, path: Path, report: SearchReport, title: str) -> bool:
    from dnnexp.report.plots import pyplot, short

    ax.set_ylabel(report.metric)
    ax.set_title(f"{title}: {short(report.root)}")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return True


def write(report: SearchReport, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    images = [out_dir / HISTORY_PNG] if plot_history(report, out_dir / HISTORY_PNG) else []
    if plot_pareto(report, out_dir / PARETO):
        images.append(out_dir / PARETO)
    paths = [out_dir / name for name in ("report.md", "report.csv", "report.json", "report.html")]
    text = markdown(report, [p.name for p in images])
    paths[0].write_text(text)
    write_csv(report, paths[1])
    run_files.write_json(paths[2], as_json(report), allow_nan=False)
    run_files.write_text(paths[3], to_html(text, out_dir))
    return paths + images
