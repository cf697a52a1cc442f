"""One row of statistics per variant, compared with the baseline: what every output renders."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dnnexp import stats
from dnnexp.config.metrics import TASK_SCORE, bounds, headline, lower_is_better
from dnnexp.report.collect import (
    ReportError,
    Run,
    Variant,
    find_runs,
    group,
    pick_baseline,
    with_tags,
)


@dataclass
class Row:
    """A variant's statistics for one metric and its comparison with the baseline."""

    variant: Variant
    baseline: bool
    summary: stats.Summary
    seeds: list[int | None]
    val_score: float | None  # the task's validation score (val/acc, val/r2) at the best epoch
    gap: float | None
    epochs_to_best: float | None
    duration_s: float | None
    comparison: stats.Comparison | None = None  # None for the baseline itself
    p_adjusted: float | None = None
    verdict: str | None = None
    # k-fold cross-validation: K (None without folds), the folds its completed runs cover and
    # the validation score's mean ± SD over them (the metric's is `summary`)
    folds: int | None = None
    fold_ids: list[int] = field(default_factory=list)
    val_summary: stats.Summary | None = None

    @property
    def name(self) -> str:
        return self.variant.name

    @property
    def tags(self) -> list[str]:
        """The tags of the variant's runs (any of them), sorted."""
        return sorted({t for r in self.variant.runs for t in r.tags})

    @property
    def not_completed(self) -> list[Run]:
        return [r for r in self.variant.runs if not r.completed]


@dataclass
class Report:
    """Everything `dnnexp report` shows and writes."""

    root: Path
    metric: str
    rows: list[Row]
    runs: list[Run]
    metrics: list[str] = field(default_factory=list)  # every metric found in the summaries
    task: str = "classification"

    @property
    def score(self) -> str:
        """The task's validation score: val/acc, val/r2."""
        return TASK_SCORE[self.task]

    @property
    def baseline(self) -> Row:
        return next(r for r in self.rows if r.baseline)

    @property
    def compared(self) -> list[Row]:
        """The rows with a test against the baseline (the k of the Holm adjustment)."""
        return [r for r in self.rows if r.comparison and r.comparison.p_value is not None]

    @property
    def lower_is_better(self) -> bool:
        return lower_is_better(self.metric)

    @property
    def cross_validation(self) -> bool:
        """Whether some variant ran k-fold cross-validation (data.folds)."""
        return any(r.folds for r in self.rows)

    @property
    def over(self) -> str:
        """What a variant's runs vary in: "seeds", "folds" or "folds × seeds"."""
        if not self.cross_validation:
            return "seeds"
        several = any(
            len({r.seed for r in row.variant.runs if r.completed}) > 1 for row in self.rows
        )
        return "folds × seeds" if several else "folds"


def available_metrics(runs: list[Run]) -> list[str]:
    """The metric keys found in the summaries, sorted."""
    return sorted({k for r in runs for k in r.metrics})


def build(
    root: Path,
    metric: str | None = None,
    baseline: str | None = None,
    tags: list[str] | None = None,
) -> Report:
    """Collect the runs under root (those with every one of `tags`), group them, and compare
    every variant with the baseline. `metric`: None = the task's headline test metric
    (test/acc, test/r2)."""
    runs = find_runs(Path(root))
    if tags:
        runs = with_tags(runs, tags, Path(root))
    tasks = sorted({r.task for r in runs})
    if len(tasks) > 1:
        raise ReportError(
            f"{root} holds runs of several tasks ({', '.join(tasks)}): report each on its own"
        )
    task = tasks[0] if tasks else "classification"
    metric = metric or headline(task)
    variants = group(runs)
    metrics = available_metrics(runs)
    if metrics and metric not in metrics:
        raise ReportError(f"unknown metric '{metric}'; available: {', '.join(metrics)}")
    base_variant = pick_baseline(variants, baseline)
    rows = [_row(v, metric, v is base_variant, TASK_SCORE[task]) for v in variants]
    base = next(r for r in rows if r.baseline)
    base_pairs = _pairs(base.variant, metric)
    for row in rows:
        if not row.baseline:
            row.comparison = stats.compare(
                base_pairs, _pairs(row.variant, metric), limits=bounds(metric)
            )
    others = [r for r in rows if not r.baseline]
    adjusted = stats.holm([r.comparison.p_value if r.comparison else None for r in others])
    lower = lower_is_better(metric)
    for row, p_adj in zip(others, adjusted, strict=True):
        row.p_adjusted = p_adj
        row.verdict = stats.verdict(row.comparison, p_adj, lower)
    return Report(root=Path(root), metric=metric, rows=rows, runs=runs, metrics=metrics, task=task)


def _pairs(variant: Variant, metric: str) -> list[tuple[object, float]]:
    """(unit, value) of the variant's completed runs that have a finite value of metric; the
    unit pairs runs across variants: the seed, or (seed, fold) under k-fold cross-validation."""
    return [(r.unit, r.metrics[metric]) for r in _valued(variant, metric)]


def _valued(variant: Variant, metric: str) -> list[Run]:
    return [
        r for r in variant.runs if r.completed and stats.finite(r.metrics.get(metric)) is not None
    ]


def _row(variant: Variant, metric: str, is_baseline: bool, score: str) -> Row:
    """`score`: the task's validation score; the gap is its train value minus its val value."""
    pairs = _pairs(variant, metric)
    done = [r for r in variant.runs if r.completed]
    train_score = score.replace("val/", "train/", 1)
    gaps = [
        r.metrics[train_score] - r.metrics[score]
        for r in done
        if train_score in r.metrics and score in r.metrics
    ]
    ks = {r.folds for r in variant.runs if r.folds}
    folds = max(ks) if ks else None  # one K per variant (data.folds differs: another variant)
    valued = _valued(variant, metric)
    cv_score = stats.describe(
        [r.metrics[score] for r in _valued(variant, score)], limits=bounds(score)
    )
    return Row(
        variant=variant,
        baseline=is_baseline,
        summary=stats.describe([v for _, v in pairs], limits=bounds(metric)),
        seeds=[r.seed for r in valued],
        val_score=_mean_finite(r.metrics.get(score) for r in done),
        gap=_mean_finite(gaps),
        epochs_to_best=_mean_finite(r.best_epoch + 1 for r in done if r.best_epoch is not None),
        duration_s=_mean_finite(r.duration_s for r in done),
        folds=folds,
        fold_ids=sorted({r.fold for r in valued if r.fold is not None}),
        val_summary=cv_score if folds else None,
    )


def _mean_finite(values: Iterable[float | None]) -> float | None:
    clean = [v for v in (stats.finite(x) for x in values) if v is not None]
    return stats.mean(clean)
