"""PNG plots of a report: validation curves per variant, and the chosen metric per variant.
matplotlib (Agg) is imported inside the plotting functions only."""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path
from typing import Any

from dnnexp import stats
from dnnexp.report.analysis import Report
from dnnexp.utils.plotting import pyplot

SCORE_NAMES = {"val/acc": "validation accuracy", "val/r2": "validation R²"}


def curves(report: Report) -> tuple[tuple[str, str], tuple[str, str]]:
    """The two panels: the validation loss and the task's validation score."""
    score = report.score
    return ("val/loss", "validation loss"), (score, SCORE_NAMES.get(score, score))


def metric_filename(metric: str) -> str:
    """metric_test_acc.png for test/acc."""
    return "metric_" + re.sub(r"[^A-Za-z0-9._-]+", "_", metric).strip("_") + ".png"


def _label(name: str, width: int = 24) -> str:
    return textwrap.fill(name, width, break_long_words=False, break_on_hyphens=False)


def curve_stats(
    histories: list[list[dict[str, float]]], key: str
) -> tuple[list[int], list[float], list[float]]:
    """Epochs (1-based), mean and SD over runs of key per epoch (SD 0 where only one run)."""
    per_epoch: dict[int, list[float]] = {}
    for history in histories:
        for row in history:
            value = stats.finite(row.get(key))
            if value is not None:
                per_epoch.setdefault(int(row["epoch"]) + 1, []).append(value)
    epochs = sorted(per_epoch)
    means = [stats.mean(per_epoch[e]) for e in epochs]
    sds = [stats.std(per_epoch[e]) or 0.0 for e in epochs]
    return epochs, means, sds


def plot_learning_curves(report: Report, path: Path) -> bool:
    """Two panels (val loss, and the val score: accuracy or R², per epoch): mean over the
    variant's completed seeds with a ±SD band, one colour per variant. False (nothing written)
    without any history."""
    series = []
    for row in report.rows:
        histories = [r.history for r in row.variant.runs if r.completed and r.history]
        if histories:
            series.append((row, histories))
    if not series:
        return False
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    cmap = plt.get_cmap("tab10" if len(series) <= 10 else "tab20")
    longest = max(len(row.name) for row, _ in series) + 20  # + " (n=3) [baseline]"
    ncol = max(1, min(3, len(series), 150 // longest))
    legend_in = 0.2 + 0.2 * math.ceil(len(series) / ncol)  # legend height below the panels
    height = 4.4 + legend_in
    band_alpha = 0.18 if len(series) <= 4 else 0.08
    fig, axes = plt.subplots(1, 2, figsize=(12, height))
    for ax, (key, label) in zip(axes, curves(report), strict=True):
        for i, (row, histories) in enumerate(series):
            epochs, means, sds = curve_stats(histories, key)
            if not epochs:
                continue
            color = cmap(i % cmap.N)
            n = len(histories)
            name = f"{row.name} (n={n})" + (" [baseline]" if row.baseline else "")
            ax.plot(
                epochs,
                means,
                color=color,
                lw=2.2 if row.baseline else 1.6,
                label=name,
                marker="o" if len(epochs) <= 12 else None,
                ms=3,
            )
            lows = [m - s for m, s in zip(means, sds, strict=True)]
            highs = [m + s for m, s in zip(means, sds, strict=True)]
            ax.fill_between(epochs, lows, highs, color=color, alpha=band_alpha, lw=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(f"{label} (mean ± SD over {report.over})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[1].get_legend_handles_labels()
    fig.suptitle(f"Learning curves: {short(report.root)}", fontsize=12)
    fig.tight_layout(rect=(0, legend_in / height, 1, 0.97))
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=ncol,
        frameon=False,
        fontsize=9,
        bbox_to_anchor=(0.5, 0.01),
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_metric(report: Report, path: Path) -> bool:
    """Bar chart of the metric per variant: mean with its 95% CI, the seeds as dots, the
    baseline hatched with a dashed line at its mean; y zoomed to the data. False without data."""
    rows = report.rows
    if not any(r.summary.mean is not None for r in rows):
        return False
    plt = pyplot()
    n = len(rows)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * n + 2.5), 5.2))
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    seen: list[float] = []
    for i, row in enumerate(rows):
        s = row.summary
        if s.mean is None:
            ax.text(
                i,
                0.5,
                "no data",
                transform=ax.get_xaxis_transform(),
                ha="center",
                color="grey",
                rotation=90,
            )
            continue
        err = None
        if s.ci_low is not None:
            err = [[s.mean - s.ci_low], [s.ci_high - s.mean]]
            seen += [s.ci_low, s.ci_high]
        ax.bar(
            i,
            s.mean,
            width=0.65,
            color=cmap(i % cmap.N),
            alpha=0.55 if row.baseline else 0.8,
            edgecolor="black",
            linewidth=1.4 if row.baseline else 0.6,
            hatch="//" if row.baseline else None,
            yerr=err,
            capsize=6,
            error_kw={"elinewidth": 1.4},
        )
        values = [
            r.metrics[report.metric]
            for r in row.variant.runs
            if r.completed and stats.finite(r.metrics.get(report.metric)) is not None
        ]
        offsets = (
            [0.0]
            if len(values) == 1
            else [-0.15 + 0.3 * j / (len(values) - 1) for j in range(len(values))]
        )
        ax.scatter([i + o for o in offsets], values, color="black", s=14, zorder=3, alpha=0.7)
        seen += values + [s.mean]
        if row.baseline:
            ax.axhline(s.mean, color="black", ls="--", lw=1, alpha=0.6)
    lo, hi = min(seen), max(seen)
    span = hi - lo or max(abs(hi) * 0.05, 1e-3)
    top = hi + 0.22 * span
    ax.set_ylim(lo - 0.15 * span, top)
    for i, row in enumerate(rows):
        mark = "baseline" if row.baseline else (row.verdict or "")
        if mark and row.summary.mean is not None:
            ax.text(
                i,
                hi + 0.08 * span,
                mark,
                ha="center",
                va="bottom",
                fontsize=9,
                color={"better": "green", "worse": "red"}.get(mark, "dimgrey"),
            )
    ax.set_xticks(range(n))
    rotate = n > 3 or max(len(r.name) for r in rows) > 30
    if rotate:  # one line per label, rotated about its right end so it sits under its bar
        labels = [r.name + (" (baseline)" if r.baseline else "") for r in rows]
        labels = [textwrap.fill(label, 48) for label in labels]  # a long name: several lines
        ax.set_xticklabels(labels, rotation=30, ha="right", rotation_mode="anchor", fontsize=9)
    else:
        labels = [_label(r.name) + ("\n(baseline)" if r.baseline else "") for r in rows]
        ax.set_xticklabels(labels, fontsize=9)
    ax.set_ylabel(f"{report.metric} (mean, 95% CI)")
    ax.set_title(
        f"{report.metric} per variant: mean with 95% t-CI, dots = {report.over}"
        f"\n{short(report.root)}",
        fontsize=11,
    )
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


PRUNE_AMOUNT = "prune.amount"


def _vs_filename(metric: str, what: str) -> str:
    """test_acc_vs_<what>.png for test/acc."""
    return metric_filename(metric).removeprefix("metric_").removesuffix(".png") + f"_vs_{what}.png"


def sparsity_filename(metric: str) -> str:
    """test_acc_vs_sparsity.png for test/acc."""
    return _vs_filename(metric, "sparsity")


Point = tuple[float, Any, list[tuple[float, float]]]  # x, the variant's Summary, its runs (x, y)


def _means_with_ci(ax: Any, points: list[Point], color: Any, label: str) -> None:
    """One line through the variants' means at their x, with 95% CI bars, and the runs as
    dots."""
    points.sort(key=lambda p: p[0])
    xs = [x for x, _, _ in points]
    means = [s.mean for _, s, _ in points]
    lows = [s.mean - s.ci_low if s.ci_low is not None else 0.0 for _, s, _ in points]
    highs = [s.ci_high - s.mean if s.ci_high is not None else 0.0 for _, s, _ in points]
    ax.errorbar(
        xs, means, yerr=[lows, highs], color=color, marker="o", ms=5, lw=1.6, capsize=5,
        label=label,
    )  # fmt: skip
    dots = [(x, y) for _, _, runs in points for x, y in runs]
    ax.scatter([x for x, _ in dots], [y for _, y in dots], color=color, s=12, alpha=0.5)


def _save(fig: Any, ax: Any, path: Path) -> bool:
    """Grid, legend, and the figure written to `path` (closed)."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return True


def _amount(override: str) -> bool:
    return override.partition("=")[0].strip().lstrip("+~") == PRUNE_AMOUNT


def _sparsity(run: Any) -> float | None:
    """A completed run's measured sparsity of the pruned weights (0 without pruning)."""
    if not run.completed:
        return None
    return stats.finite((run.pruning or {}).get("sparsity", 0.0))


def plot_sparsity(report: Report, path: Path) -> bool:
    """The metric against the measured sparsity of the pruned weights, one point per variant
    (mean with its 95% t-CI, the runs as dots), one line per combination of the other
    overrides; the init_from runs' value as a dashed line. Only when the variants differ in
    prune.amount; False (nothing written) otherwise."""
    amounts = {o for row in report.rows for o in row.variant.overrides if _amount(o)}
    if not amounts or len(report.rows) < 2:  # prune.amount shared by all runs, or unset
        return False
    lines: dict[str, list[Point]] = {}
    for row in report.rows:
        runs = [(_sparsity(r), r.metrics.get(report.metric)) for r in row.variant.runs]
        runs = [(x, y) for x, y in runs if x is not None and stats.finite(y) is not None]
        if not runs or row.summary.mean is None:
            continue
        x = stats.mean([x for x, _ in runs])
        others = " ".join(o for o in row.variant.overrides if not _amount(o))
        lines.setdefault(others, []).append((x, row.summary, runs))
    if not any(len(points) > 1 for points in lines.values()):
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.2))
    cmap = plt.get_cmap("tab10")
    for i, (label, points) in enumerate(sorted(lines.items())):
        _means_with_ci(ax, points, cmap(i % cmap.N), label or "mean")
    before = {
        (r.pruning["before"].get("run"), r.pruning["before"]["metrics"][report.metric])
        for r in report.runs
        if r.pruning
        and isinstance(r.pruning.get("before"), dict)
        and report.metric in (r.pruning["before"].get("metrics") or {})
    }
    if before:
        value = stats.mean([v for _, v in before])
        runs = "the init_from run" if len(before) == 1 else f"mean of {len(before)} init_from runs"
        ax.axhline(value, color="black", ls="--", lw=1, alpha=0.7, label=f"before ({runs})")
    ax.set_xlabel("sparsity of the pruned weights (measured in best.ckpt)")
    ax.set_ylabel(f"{report.metric} (mean, 95% CI)")
    ax.set_title(
        f"{report.metric} vs sparsity: mean with 95% t-CI, dots = {report.over}"
        f"\n{short(report.root)}",
        fontsize=11,
    )
    return _save(fig, ax, path)


def privacy_filename(metric: str) -> str:
    """test_acc_vs_epsilon.png for test/acc."""
    return _vs_filename(metric, "epsilon")


def _epsilon(row: Any) -> float | None:
    """A variant's ε: the mean of its completed runs' spent ε (None: no private run)."""
    spent = [
        stats.finite(r.privacy.get("epsilon"))
        for r in row.variant.runs
        if r.completed and r.privacy
    ]
    spent = [e for e in spent if e is not None]
    return stats.mean(spent) if spent else None


def plot_privacy(report: Report, path: Path) -> bool:
    """The metric against ε spent (log scale), one point per private variant (mean with its
    95% t-CI, the runs as dots); non-private variants as a band (mean and CI) labelled "no
    privacy". Only when there are private variants and something to compare them with."""
    private, public = [], []
    for row in report.rows:
        if row.summary.mean is None:
            continue
        epsilon = _epsilon(row)
        (public if epsilon is None else private).append((epsilon, row))
    if not private or len(private) + len(public) < 2:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.2))
    points = []
    for epsilon, row in private:
        values = [r.metrics.get(report.metric) for r in row.variant.runs if r.completed]
        runs = [(epsilon, v) for v in values if stats.finite(v) is not None]
        points.append((epsilon, row.summary, runs))
    _means_with_ci(ax, points, "tab:blue", "DP-SGD (mean, 95% CI)")
    xs = [x for x, _, _ in points]
    for i, (_, row) in enumerate(public):
        s = row.summary
        color = plt.get_cmap("tab10")((i + 1) % 10)
        ax.axhline(
            s.mean, color=color, ls="--", lw=1.2, label=f"no privacy: {_label(row.name, 40)}"
        )
        if s.ci_low is not None and s.ci_high is not None:
            ax.axhspan(s.ci_low, s.ci_high, color=color, alpha=0.12)
    ax.set_xscale("log")
    ax.set_xticks(xs, [f"{e:.3g}" for e in xs])
    ax.set_xticks([], minor=True)  # the log scale's own minor labels would overlap these
    ax.set_xlabel("ε spent (the ledger's; δ as in each run's summary.json)")
    ax.set_ylabel(f"{report.metric} (mean, 95% CI)")
    ax.set_title(
        f"{report.metric} vs privacy: dots = {report.over}\n{short(report.root)}", fontsize=11
    )
    return _save(fig, ax, path)


def short(path: Path, parts: int = 4) -> str:
    """The last few parts of a path, enough to tell sweeps apart in a title."""
    return "/".join(Path(path).resolve().parts[1:][-parts:])
