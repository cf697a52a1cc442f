"""The report as a rich table, Markdown (report.md), one CSV row per job and JSON per variant."""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from dnnexp import stats
from dnnexp.config.metrics import bounds
from dnnexp.config.overrides import privacy_warning
from dnnexp.report.analysis import Report, Row
from dnnexp.utils import run_files

DASH = "—"
VERDICT_STYLE = {
    "better": "bold green",
    "worse": "bold red",
    "≈ noise": "yellow",
    stats.TOO_FEW: "dim",
}


def num(x: float | None, digits: int = 4, sign: bool = False) -> str:
    if x is None:
        return DASH
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def pval(p: float | None) -> str:
    if p is None:
        return DASH
    if p == 0:
        return "0"  # a zero-spread difference: the t statistic is infinite
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def n_cell(row: Row) -> str:
    """'3', or '2 +1 failed +1 running' when some jobs did not complete."""
    counts = Counter(r.status for r in row.not_completed)
    return f"{row.summary.n}" + "".join(f" +{c} {status}" for status, c in counts.items())


def delta_cell(row: Row) -> str:
    if row.baseline:
        return "baseline"
    c = row.comparison
    if c is None or c.delta is None:
        return DASH
    if c.ci_low is None or c.ci_high is None:
        return num(c.delta, sign=True)
    return f"{num(c.delta, sign=True)} [{num(c.ci_low, sign=True)}, {num(c.ci_high, sign=True)}]"


def verdict_cell(row: Row) -> str:
    if row.baseline:
        return "(baseline)"
    if row.verdict is None:
        return DASH
    return row.verdict


def headers(report: Report) -> list[str]:
    """Column headers; a newline marks where the terminal table may break a header."""
    return [
        "variant",
        "n",
        f"{report.metric}\nmean ± SD",
        f"{report.metric}\n95% CI",
        f"best\n{score_label(report)}",
        "gap\ntrain−val",
        "epochs\nto best",
        "s / job",
        "Δ vs baseline\n[95% CI]",
        "test",
        "p",
        "p\nHolm",
        "verdict",
    ]


def cells(row: Row) -> list[str]:
    """One table row as text, shared by the terminal table and the Markdown one."""
    s = row.summary
    mean_sd = DASH if s.mean is None else num(s.mean)
    if s.std is not None:
        mean_sd += f" ± {num(s.std)}"
    ci = DASH if s.ci_low is None else f"[{num(s.ci_low)}, {num(s.ci_high)}]"
    c = row.comparison
    return [
        row.name + (f"  [{', '.join(row.tags)}]" if row.tags else ""),
        n_cell(row),
        mean_sd,
        ci,
        num(row.val_score),
        num(row.gap, sign=True),
        num(row.epochs_to_best, 1),
        num(row.duration_s, 1),
        delta_cell(row),
        (c.test if c and c.test else DASH) if not row.baseline else "",
        pval(c.p_value) if c else "",
        pval(row.p_adjusted) if c else "",
        verdict_cell(row),
    ]


def footnote(report: Report) -> str:
    """The line under the table: what ±, CI, n, the tests and the adjusted p mean."""
    ns = sorted({r.summary.n for r in report.rows})
    n_text = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    direction = "lower" if report.lower_is_better else "higher"
    cv = report.cross_validation
    parts = [
        f"{report.metric}: {direction} is better",
        f"± = SD over {report.over} (ddof=1)",
        "95% CI = t-interval of the mean",
        f"n = completed {f'runs ({report.over})' if cv else 'seeds'} per variant ({n_text})",
    ]
    if report.task == "multitask":
        parts.append("best val score = each run's own task.score (val/<head>/<metric>)")
    if cv:
        parts.append(
            "folds share training data, so the CIs and tests, which take the runs as"
            " independent, are optimistic"
        )
    if len(report.rows) > 1:
        tests = Counter(r.comparison.test for r in report.compared if r.comparison)
        shared = "(seed, fold) runs" if cv else "seeds"
        names = {
            stats.PAIRED: f"paired t-test over the shared {shared}",
            stats.WELCH: "Welch's t-test",
        }
        used = ", ".join(f"{names.get(t, t)} ×{count}" for t, count in tests.items())
        k = len(report.compared)
        parts += [
            f"Δ = variant − baseline '{report.baseline.name}'",
            f"tests: {used or 'none (fewer than 2 seeds on a side)'}",
            f"p Holm = p-values Holm-adjusted across k={k} comparison{'s' * (k != 1)}"
            " (the Δ CIs are per comparison, not adjusted)",
            f"≈ noise = p Holm ≥ {stats.ALPHA}",
        ]
        if any(r.verdict == stats.TOO_FEW for r in report.rows):
            parts.append(
                f"{stats.TOO_FEW} = {stats.TOO_FEW_WHY} (a discrete metric's steps, not"
                " evidence): no verdict"
            )
    low, high = bounds(report.metric)
    if math.isfinite(low) or math.isfinite(high):
        shown = ", ".join(f"{v:g}" if math.isfinite(v) else "∞" for v in (low, high))
        parts.append(f"intervals clipped to {report.metric}'s range [{shown}]")
    return "; ".join(parts) + "."


# columns of cells() kept by the compact terminal table, merged as (first, second) per column
COMPACT = ((0, None), (1, None), (2, 3), (8, None), (10, None), (11, None), (12, None))
LEFT = (0, 9, 12)


def rich_table(report: Report, compact: bool = False) -> Table:
    """The terminal table; compact: for a narrow terminal, mean ± SD with its CI below it, and
    without the val acc, gap, epochs, time and test columns (they stay in report.md)."""
    table = Table(
        title=f"{report.metric} over {report.over}: {report.root}",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD,
    )
    head = headers(report)
    layout = COMPACT if compact else tuple((i, None) for i in range(len(head)))
    for i, j in layout:
        title = head[i] if j is None else f"{report.metric}\nmean ± SD [95% CI]"
        table.add_column(
            title,
            justify="left" if i in LEFT else "right",
            overflow="fold" if i == 0 else "ellipsis",
        )
    for row in report.rows:
        full = cells(row)
        if compact:  # break the long cells where they read well: "2\n+1 failed", "+0.01\n[CI]"
            full[1] = full[1].replace(" +", "\n+")
            full[8] = full[8].replace(" [", "\n[")
        texts = [Text(full[i] if j is None else f"{full[i]}\n{full[j]}") for i, j in layout]
        if row.baseline:
            texts[0].stylize("bold")
        texts[-1].stylize(VERDICT_STYLE.get(row.verdict or "", "dim"))
        table.add_row(*texts)
    return table


def incomplete_table(report: Report) -> Table | None:
    """The jobs that did not complete: dir, overrides, status, error."""
    runs = [r for r in report.runs if not r.completed]
    if not runs:
        return None
    table = Table(title="jobs not completed", title_justify="left", header_style="bold")
    for column in ("dir", "overrides", "status", "error"):
        table.add_column(column)
    for run in runs:
        table.add_row(
            Text(run.rel),
            Text(" ".join(run.overrides or []) or DASH),
            Text(run.status, style="red" if run.status != "running" else "yellow"),
            Text(run.error or ""),
        )
    return table


def cross_validation(report: Report) -> list[str]:
    """One line per variant that ran k-fold cross-validation: its validation score and the
    metric, mean ± SD over its folds (and seeds)."""
    lines = []
    for row in report.rows:
        if not row.folds:
            continue
        seeds = len({r.seed for r in row.variant.runs if r.completed})
        covered = len(row.fold_ids)
        folds = f"{covered} folds" if covered == row.folds else f"{covered} of {row.folds} folds"
        over = f"{row.summary.n} runs: {folds} × {seeds} seeds" if seeds > 1 else folds
        shown = [(report.score, row.val_summary)]
        if report.metric != report.score:
            shown.append((report.metric, row.summary))
        values = ", ".join(
            f"{metric} {num(s.mean)} ± {num(s.std)}" for metric, s in shown if s is not None
        )
        lines.append(
            f"{row.folds}-fold cross-validation, {row.name}: {values} (mean ± SD over {over})"
        )
    return lines


def privacy_note(report: Report) -> list[str]:
    """Whenever private runs (privacy=dp) are compared: the privacy their comparison spends."""
    private = [r for r in report.runs if r.privacy]
    if not private or len(report.runs) < 2:
        return []
    return [privacy_warning(len(private))]


def print_report(report: Report, console: Console) -> None:
    """The table (compact when the full one would not fit), the cross-validation, its
    footnote, incomplete jobs."""
    table = rich_table(report)
    wide = console.options.update_width(100_000)
    compact = Measurement.get(console, wide, table).maximum > console.width
    console.print(rich_table(report, compact=True) if compact else table)
    if compact:
        console.print(
            Text(
                f"(narrow terminal: best {score_label(report)}, gap, epochs to best,"
                " s / job and the test used are in report.md)",
                style="dim",
            )
        )
    for line in cross_validation(report):
        console.print(Text(line, style="bold"), soft_wrap=True)
    for line in privacy_note(report):
        console.print(Text(line, style="bold"), soft_wrap=True)
    console.print(Text(footnote(report), style="dim"))
    heads = head_table(report)
    if heads is not None:
        console.print(heads)
        console.print(Text(HEADS_NOTE, style="dim"))
    incomplete = incomplete_table(report)
    if incomplete is not None:
        console.print(incomplete)


def score_label(report: Report) -> str:
    """The best-validation column's name: `val acc`; multitask `val score` (each run's own
    task.score, `val/<head>/<metric>`)."""
    return "val score" if report.task == "multitask" else report.score.replace("/", " ")


HEADS_NOTE = (
    "Per head: each head's test metric, mean ± SD [95% CI] over seeds; Δ vs the baseline"
    " [95% CI] and p Holm (adjusted across that head's comparisons) where both it and the"
    " baseline have the head; — where a variant has no such head."
)


def head_cells(report: Report) -> tuple[list[str], list[list[str]]]:
    """task=multitask: the per-head table's header and rows (one column of values and one of
    the comparison per head)."""
    header = ["variant"]
    for metric, _ in report.heads:
        header += [f"{metric}\nmean ± SD [95% CI]", f"{metric}\nΔ [95% CI], p Holm"]
    rows = []
    for i, row in enumerate(report.rows):
        cells = [row.name]
        for _, column in report.heads:
            cell = column[i]
            s, c = cell.summary, cell.comparison
            value = DASH if s.mean is None else num(s.mean)
            value += f" ± {num(s.std)}" if s.std is not None else ""
            value += f" [{num(s.ci_low)}, {num(s.ci_high)}]" if s.ci_low is not None else ""
            if row.baseline and s.n:
                delta = "baseline"
            elif c is None or c.delta is None:
                delta = DASH
            else:
                delta = num(c.delta, sign=True)
                if c.ci_low is not None and c.ci_high is not None:
                    delta += f" [{num(c.ci_low, sign=True)}, {num(c.ci_high, sign=True)}]"
                delta += f", p {pval(cell.p_adjusted)}" + (
                    f" ({cell.verdict})" if cell.verdict else ""
                )
            cells += [value, delta]
        rows.append(cells)
    return header, rows


def head_table(report: Report) -> Table | None:
    if not report.heads:
        return None
    header, rows = head_cells(report)
    table = Table(title="per head (test split)", title_justify="left", header_style="bold")
    for i, title in enumerate(header):
        table.add_column(title, justify="left" if i == 0 else "right", overflow="fold")
    for row, cells in zip(report.rows, rows, strict=True):
        texts = [Text(cell) for cell in cells]
        if row.baseline:
            texts[0].stylize("bold")
        table.add_row(*texts)
    return table


def _heads_json(report: Report, i: int) -> dict[str, Any]:
    out = {}
    for metric, column in report.heads:
        cell = column[i]
        out[metric] = {
            **_summary_json(cell.summary, cell.comparison, cell.p_adjusted),
            "verdict": cell.verdict,
        }
    return out


def _summary_json(s: Any, c: Any, p_adjusted: float | None) -> dict[str, Any]:
    """A metric's n, mean, SD and CI over runs, and its comparison with the baseline's (None
    where there is none); NaN as None."""
    return {
        "n": s.n,
        "mean": stats.finite(s.mean),
        "std": stats.finite(s.std),
        "ci95": [stats.finite(s.ci_low), stats.finite(s.ci_high)],
        "delta": stats.finite(c.delta) if c else None,
        "delta_ci95": [
            stats.finite(c.ci_low) if c else None,
            stats.finite(c.ci_high) if c else None,
        ],
        "test": c.test if c else None,
        "p_value": stats.finite(c.p_value) if c else None,
        "p_adjusted": stats.finite(p_adjusted),
    }


def ranking(report: Report) -> list[str]:
    """Plain-words conclusions: the significant differences ordered by effect, the rest named as
    within noise; no ranking at all when nothing is significant."""
    base = report.baseline
    m = report.metric
    others = [r for r in report.rows if not r.baseline]
    if not others:
        s = base.summary
        what = f"run(s) ({report.over})" if report.cross_validation else "seed(s)"
        return [
            f"One variant only, nothing to compare: {m} = {num(s.mean)} ± {num(s.std)} (SD) "
            f"over n = {s.n} {what}."
        ]
    significant = [r for r in others if r.verdict in ("better", "worse")]
    sign = 1 if report.lower_is_better else -1
    significant.sort(key=lambda r: sign * r.comparison.delta)
    noise = [r for r in others if r.verdict == "≈ noise"]
    too_few = [r for r in others if r.verdict == stats.TOO_FEW]
    untested = [r for r in others if r.verdict is None]
    k = len(report.compared)
    lines = []
    if significant:
        lines.append(
            f"Significant after Holm adjustment (k={k}), ordered by effect on {m} "
            f"against the baseline `{base.name}`:"
        )
        lines.append("")
        for i, r in enumerate(significant, 1):
            lines.append(f"{i}. `{r.name}` is **{r.verdict}**: {_effect(r, m, base.summary.n)}.")
    else:
        lines.append(
            f"No variant differs significantly from the baseline `{base.name}` on {m} after "
            f"Holm adjustment (k={k}): every measured difference is within noise, so there is "
            "no ranking to make."
        )
    if noise:
        lines.append("")
        lines.append(f"Within noise of the baseline (p Holm ≥ {stats.ALPHA}):")
        lines.append("")
        lines += [f"- `{r.name}`: {_effect(r, m, base.summary.n)}" for r in noise]
    if too_few:
        lines.append("")
        lines.append(
            f"Too few seeds to tell ({stats.TOO_FEW_WHY}): run more seeds before reading"
            " anything into these:"
        )
        lines.append("")
        lines += [f"- `{r.name}`: {_effect(r, m, base.summary.n)}" for r in too_few]
    if untested:
        lines.append("")
        lines.append("Not tested (fewer than 2 completed seeds on a side):")
        lines.append("")
        lines += [f"- `{r.name}`: n = {r.summary.n}" for r in untested]
    return lines


def _effect(row: Row, metric: str, base_n: int) -> str:
    c = row.comparison
    ci = ""
    if c.ci_low is not None and c.ci_high is not None:
        ci = f" (95% CI {num(c.ci_low, sign=True)} to {num(c.ci_high, sign=True)})"
    test = c.test if c.p_value is not None else f"no test ({c.no_verdict})"
    return (
        f"Δ {metric} = {num(c.delta, sign=True)}{ci}, {test}, n = {row.summary.n} vs {base_n}, "
        f"p = {pval(c.p_value)}, p Holm = {pval(row.p_adjusted)}"
    )


def _md_escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def markdown(report: Report, plots: list[str]) -> str:
    """report.md: the table, the footnote, the conclusions, incomplete jobs and the plots."""
    head = [h.replace("\n", " ") for h in headers(report)]
    lines = [
        f"# Report: {report.root}",
        "",
        f"Metric: `{report.metric}`; baseline: `{report.baseline.name}`; "
        f"{len(report.runs)} job(s) in {len(report.rows)} variant(s).",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" if i in (0, 9, 12) else "---:" for i in range(len(head))) + " |",
    ]
    lines += ["| " + " | ".join(_md_escape(c) for c in cells(r)) + " |" for r in report.rows]
    lines += ["", footnote(report)]
    if report.cross_validation:
        lines += ["", "## Cross-validation", ""]
        lines += [f"- {line}" for line in cross_validation(report)]
    if privacy_note(report):
        lines += ["", "## Privacy", "", *privacy_note(report)]
    if report.heads:
        header, rows = head_cells(report)
        lines += ["", "## Per head", "", "| " + " | ".join(h.replace("\n", " ") for h in header)]
        lines[-1] += " |"
        lines.append("| --- |" + " ---: |" * (len(header) - 1))
        lines += ["| " + " | ".join(_md_escape(c) for c in cells) + " |" for cells in rows]
        lines += ["", HEADS_NOTE]
    lines += ["", "## Conclusions", "", *ranking(report)]
    runs = [r for r in report.runs if not r.completed]
    if runs:
        lines += ["", "## Jobs not completed", "", "| dir | overrides | status | error |"]
        lines.append("| --- | --- | --- | --- |")
        lines += [
            "| "
            + " | ".join(
                _md_escape(c)
                for c in (r.rel, " ".join(r.overrides or []) or DASH, r.status, r.error or "")
            )
            + " |"
            for r in runs
        ]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def csv_columns(report: Report) -> list[str]:
    return [
        "dir",
        "variant",
        "seed",
        *(["fold"] if report.cross_validation else []),
        "status",
        "tags",
        *report.metrics,
        "best_epoch",
        "epochs",
        "duration_s",
        "params",
        "error",
    ]


def write_csv(report: Report, path: Path) -> None:
    """report.csv: one row per job (empty cells where a job has no value)."""
    variant_of = {id(run): row.name for row in report.rows for run in row.variant.runs}
    with Path(path).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=csv_columns(report))
        writer.writeheader()
        for run in report.runs:
            writer.writerow(
                {
                    "dir": run.rel,
                    "variant": variant_of.get(id(run), ""),
                    "seed": run.seed,
                    **({"fold": run.fold} if report.cross_validation else {}),
                    "status": run.status,
                    "tags": ";".join(run.tags),
                    **run.metrics,
                    "best_epoch": run.best_epoch,
                    "epochs": run.epochs,
                    "duration_s": run.duration_s,
                    "params": run.params,
                    "error": run.error or "",
                }
            )


def json_rows(report: Report) -> list[dict[str, Any]]:
    """One entry per variant; undefined numbers are None (JSON null), never NaN."""
    out = []
    for i, row in enumerate(report.rows):
        s, c = row.summary, row.comparison
        out.append(
            {
                "variant": row.name,
                "overrides": list(row.variant.overrides),
                "tags": row.tags,
                "metric": report.metric,
                "lower_is_better": report.lower_is_better,
                **_summary_json(s, c, row.p_adjusted),
                "delta": stats.finite(c.delta) if c else (0.0 if s.n else None),
                "n_failed": len(row.not_completed),
                "verdict": "baseline" if row.baseline else row.verdict,
                "baseline": row.baseline,
                "seeds": row.seeds,
                **(_cv_json(row, report.score) if report.cross_validation else {}),
                **({"heads": _heads_json(report, i)} if report.heads else {}),
            }
        )
    return out


def _cv_json(row: Row, score: str) -> dict[str, Any]:
    """k-fold cross-validation: K, the folds covered, the validation score's mean ± SD."""
    s = row.val_summary
    return {
        "folds": row.folds,
        "fold_ids": row.fold_ids,
        "cv_score": None
        if s is None
        else {"metric": score, "n": s.n, "mean": stats.finite(s.mean), "std": stats.finite(s.std)},
    }


def write_report_json(report: Report, path: Path) -> None:
    run_files.write_json(path, json_rows(report), allow_nan=False)  # strict JSON for tools
