"""One row of statistics per variant, compared with the baseline: what every output renders."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dnnexp import stats
from dnnexp.config.heads import head_score
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
class HeadCell:
    """task=multitask: one variant's statistics for one head's metric, and its comparison
    with the baseline where both have the head (else None)."""

    summary: stats.Summary
    comparison: stats.Comparison | None = None
    p_adjusted: float | None = None
    verdict: str | None = None


@dataclass
class Report:
    """Everything `dnnexp report` shows and writes."""

    root: Path
    metric: str
    rows: list[Row]
    runs: list[Run]
    metrics: list[str] = field(default_factory=list)  # every metric found in the summaries
    task: str = "classification"
    # task=multitask: each head's headline test metric and a cell per row (in `rows`' order)
    heads: list[tuple[str, list[HeadCell]]] = field(default_factory=list)

    @property
    def score(self) -> str:
        """The task's validation score: val/acc, val/r2; multitask: the baseline's (each run's
        own is its `task.score`)."""
        if self.task == "multitask":
            runs = self.baseline.variant.runs if self.rows else self.runs
            return next((r.score for r in runs if r.completed), TASK_SCORE[self.task])
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
    variants = group(runs)
    base_variant = pick_baseline(variants, baseline)
    head_metrics = _head_metrics(runs) if task == "multitask" else []
    if task == "multitask" and metric is None:  # the baseline's score, on the test split
        score = next((r.score for r in base_variant.runs if r.completed), None)
        metric = "test/" + score.split("/", 1)[1] if score else None
    metric = metric or (head_metrics[0] if head_metrics else headline(task))
    metrics = available_metrics(runs)
    if metrics and metric not in metrics:
        raise ReportError(f"unknown metric '{metric}'; available: {', '.join(metrics)}")
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
    heads = [(m, _head_cells(variants, base_variant, m)) for m in head_metrics]
    return Report(
        root=Path(root),
        metric=metric,
        rows=rows,
        runs=runs,
        metrics=metrics,
        task=task,
        heads=heads,
    )


def _head_metrics(runs: list[Run]) -> list[str]:
    """task=multitask: each head's headline test metric (`test/<head>/acc`, `/r2`), every head
    of every run, in the order the runs name them."""
    found = (f"test/{h['name']}/{head_score(h.get('kind', ''))}" for r in runs for h in r.heads)
    return list(dict.fromkeys(found))


def _head_cells(variants: list[Variant], base: Variant, metric: str) -> list[HeadCell]:
    """One head's metric in every variant, compared with the baseline (paired by seed, as the
    main metric) where both have it; the p-values Holm-adjusted across those comparisons."""
    base_pairs = _pairs(base, metric)
    cells = []
    for variant in variants:
        pairs = _pairs(variant, metric)
        cell = HeadCell(stats.describe([v for _, v in pairs], limits=bounds(metric)))
        if variant is not base and pairs and base_pairs:
            cell.comparison = stats.compare(base_pairs, pairs, limits=bounds(metric))
        cells.append(cell)
    compared = [c for c in cells if c.comparison is not None]
    adjusted = stats.holm([c.comparison.p_value for c in compared])
    for cell, p_adj in zip(compared, adjusted, strict=True):
        cell.p_adjusted = p_adj
        cell.verdict = stats.verdict(cell.comparison, p_adj, lower_is_better(metric))
    return cells


def _pairs(variant: Variant, metric: str) -> list[tuple[object, float]]:
    """(unit, value) of the variant's completed runs that have a finite value of metric; the
    unit pairs runs across variants: the seed, or (seed, fold) under k-fold cross-validation."""
    return [(r.unit, r.metrics[metric]) for r in _valued(variant, metric)]


def _valued(variant: Variant, metric: str) -> list[Run]:
    return [
        r for r in variant.runs if r.completed and stats.finite(r.metrics.get(metric)) is not None
    ]


def _row(variant: Variant, metric: str, is_baseline: bool, score: str) -> Row:
    """`score`: the task's validation score; the gap is its train value minus its val value
    (each run's own score: a multitask run's `task.score`)."""
    pairs = _pairs(variant, metric)
    done = [r for r in variant.runs if r.completed]
    gaps = [
        r.metrics[train] - r.metrics[r.score]
        for r in done
        for train in [r.score.replace("val/", "train/", 1)]
        if train in r.metrics and r.score in r.metrics
    ]
    if done and done[0].task == "multitask":
        score = done[0].score  # k-fold: the variant's score
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
        val_score=_mean_finite(r.metrics.get(r.score) for r in done),
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
