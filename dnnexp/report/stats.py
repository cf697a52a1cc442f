"""Statistics over seeds: pure functions over plain lists of floats.

Per variant: mean, SD (ddof=1) and the t-interval of the mean. Against the baseline: a paired
t-test over the seeds when both variants completed the same seeds (n >= 2), Welch's t-test
otherwise, no test when either side has fewer than 2 values. p-values are Holm-adjusted over the
comparisons made. scipy is imported inside the functions that need it."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.05
CONFIDENCE = 0.95
PAIRED = "paired t"
WELCH = "Welch t"


@dataclass(frozen=True)
class Summary:
    """n, mean, SD (ddof=1) and the t-interval of the mean; None where undefined."""

    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class Comparison:
    """A variant against the baseline: delta = mean(variant) - mean(baseline)."""

    test: str | None  # PAIRED, WELCH or None (fewer than 2 values on a side)
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    statistic: float | None = None
    df: float | None = None


def finite(x: float | None) -> float | None:
    """x as a float, or None for None/NaN/inf (JSON and tables show it as undefined)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def std(values: Sequence[float]) -> float | None:
    """Sample standard deviation (ddof=1); None for fewer than 2 values."""
    if len(values) < 2:
        return None
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def t_interval(
    values: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """The t-distribution confidence interval of the mean; None for fewer than 2 values."""
    if len(values) < 2:
        return None
    from scipy import stats

    m, s, n = mean(values), std(values), len(values)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * s / math.sqrt(n)
    return m - half, m + half


def describe(values: Sequence[float], confidence: float = CONFIDENCE) -> Summary:
    """n, mean, SD and t-interval of values (NaN/inf dropped first)."""
    clean = [float(v) for v in values if finite(v) is not None]
    ci = t_interval(clean, confidence)
    return Summary(
        n=len(clean),
        mean=mean(clean),
        std=std(clean),
        ci_low=ci[0] if ci else None,
        ci_high=ci[1] if ci else None,
    )


def can_pair(base_seeds: Sequence[object], other_seeds: Sequence[object]) -> bool:
    """Paired when both sides ran the same, known, distinct seeds, at least 2 of them."""
    return (
        len(base_seeds) >= 2
        and None not in base_seeds
        and len(set(base_seeds)) == len(base_seeds)
        and len(set(other_seeds)) == len(other_seeds)
        and set(base_seeds) == set(other_seeds)
    )


def compare(
    base: Sequence[tuple[object, float]],
    other: Sequence[tuple[object, float]],
    confidence: float = CONFIDENCE,
) -> Comparison:
    """other vs base, each a list of (seed, value): paired t-test over the seeds when
    can_pair(), else Welch's t-test; no test when a side has fewer than 2 values.

    Both sides constant and equal (zero variance, zero difference) is reported as p = 1 with a
    zero-width interval rather than the undefined 0/0 t statistic."""
    base_values = [v for _, v in base]
    other_values = [v for _, v in other]
    base_mean, other_mean = mean(base_values), mean(other_values)
    delta = other_mean - base_mean if base_mean is not None and other_mean is not None else None
    if len(base_values) < 2 or len(other_values) < 2:
        return Comparison(None, delta, None, None, None)
    from scipy import stats

    with warnings.catch_warnings():  # near-identical data: scipy warns, the result stands
        warnings.simplefilter("ignore", RuntimeWarning)
        if can_pair([s for s, _ in base], [s for s, _ in other]):
            by_seed = dict(base)
            test = PAIRED
            paired_other = [v for _, v in other]
            paired_base = [by_seed[s] for s, _ in other]
            result = stats.ttest_rel(paired_other, paired_base)
        else:
            test = WELCH
            result = stats.ttest_ind(other_values, base_values, equal_var=False)
        ci = result.confidence_interval(confidence_level=confidence)
    p = finite(result.pvalue)
    low, high = finite(ci.low), finite(ci.high)
    if p is None and delta == 0:
        p, low, high = 1.0, 0.0, 0.0
    return Comparison(test, delta, low, high, p, finite(result.statistic), finite(result.df))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None entries are skipped and stay None)."""
    order = sorted((i for i, p in enumerate(p_values) if p is not None), key=lambda i: p_values[i])
    k = len(order)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def verdict(
    p_adjusted: float | None, delta: float | None, lower_better: bool, alpha: float = ALPHA
) -> str | None:
    """'better'/'worse' when the adjusted p is below alpha, '≈ noise' otherwise, None without a
    test."""
    if p_adjusted is None or delta is None:
        return None
    if p_adjusted >= alpha or delta == 0:
        return "≈ noise"
    return "better" if (delta < 0) == lower_better else "worse"
