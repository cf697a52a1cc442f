"""Statistics over seeds: pure functions over plain lists of floats.

Per variant: mean, SD (ddof=1) and the t-interval of the mean. Against the baseline: a paired
t-test over the seeds when both variants completed the same seeds (n >= 2), Welch's t-test
otherwise, no test when either side has fewer than 2 values. p-values are Holm-adjusted over the
comparisons made. Intervals are clipped to the metric's range (`config/metrics.py: BOUNDS`).

A verdict needs at least MIN_PAIRS seeds (pairs, or values on each side) and differences that
vary: test accuracy moves in steps of 1/N_test, so two seeds whose differences happen to be equal
give a t-test with zero variance and a p-value near 0 that is an artefact, not evidence.
scipy is imported inside the functions that need it."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.05
CONFIDENCE = 0.95
PAIRED = "paired t"
WELCH = "Welch t"
MIN_PAIRS = 3  # a t-test on 2 seeds has 1 degree of freedom: its p rests on one spread
TOO_FEW = "too few seeds to tell"
TOO_FEW_WHY = f"fewer than {MIN_PAIRS} seeds on a side, or the same Δ on every seed"
UNBOUNDED = (-math.inf, math.inf)


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
    n: int = 0  # the pairs (paired) or the smaller side (Welch) the test rests on
    # why no verdict can be drawn (fewer than MIN_PAIRS, the same Δ on every seed), or None
    no_verdict: str | None = None


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


def clip(low: float | None, high: float | None, limits: tuple[float, float]) -> tuple:
    """An interval clipped to limits (a metric's range)."""
    lo, hi = limits
    return (None if low is None else max(low, lo)), (None if high is None else min(high, hi))


def describe(
    values: Sequence[float], confidence: float = CONFIDENCE, limits: tuple = UNBOUNDED
) -> Summary:
    """n, mean, SD and t-interval of values (NaN/inf dropped first), the interval clipped to
    `limits` (the metric's range: an accuracy's never reaches above 1)."""
    clean = [float(v) for v in values if finite(v) is not None]
    ci = t_interval(clean, confidence)
    low, high = clip(ci[0], ci[1], limits) if ci else (None, None)
    return Summary(n=len(clean), mean=mean(clean), std=std(clean), ci_low=low, ci_high=high)


def _constant(values: Sequence[float]) -> bool:
    """All equal, up to float rounding: no spread a t-test could rest on."""
    return max(values) - min(values) <= 1e-9 * max(1.0, *(abs(v) for v in values))


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
    limits: tuple = UNBOUNDED,
) -> Comparison:
    """other vs base, each a list of (seed, value): paired t-test over the seeds when
    can_pair(), else Welch's t-test; no test when a side has fewer than 2 values. The Δ's
    interval is clipped to what a difference of values within `limits` can be.

    Both sides constant and equal (zero variance, zero difference: the same runs) is reported
    as p = 1 with a zero-width interval rather than the undefined 0/0 t statistic. The same
    non-zero Δ on every seed (or two constant sides) has no spread to test: no test, no
    verdict. Fewer than MIN_PAIRS seeds: the test is shown, but no verdict is drawn."""
    base_values = [v for _, v in base]
    other_values = [v for _, v in other]
    base_mean, other_mean = mean(base_values), mean(other_values)
    delta = other_mean - base_mean if base_mean is not None and other_mean is not None else None
    n = min(len(base_values), len(other_values))
    if n < 2:
        return Comparison(None, delta, None, None, None, n=n, no_verdict=f"n = {n}")
    from scipy import stats

    paired = can_pair([s for s, _ in base], [s for s, _ in other])
    if paired:
        by_seed = dict(base)
        diffs = [v - by_seed[s] for s, v in other]
        constant = _constant(diffs)
    else:
        constant = _constant(base_values) and _constant(other_values)
    if constant and delta is not None and abs(delta) > 1e-12:
        why = "the same Δ on every seed" if paired else "no spread on either side"
        return Comparison(None, delta, None, None, None, n=n, no_verdict=why)
    with warnings.catch_warnings():  # near-identical data: scipy warns, the result stands
        warnings.simplefilter("ignore", RuntimeWarning)
        if paired:
            test = PAIRED
            result = stats.ttest_rel([v for _, v in other], [by_seed[s] for s, _ in other])
        else:
            test = WELCH
            result = stats.ttest_ind(other_values, base_values, equal_var=False)
        ci = result.confidence_interval(confidence_level=confidence)
    p = finite(result.pvalue)
    low, high = finite(ci.low), finite(ci.high)
    if p is None and delta == 0:
        p, low, high = 1.0, 0.0, 0.0
    span = limits[1] - limits[0]
    low, high = clip(low, high, (-span, span))
    no_verdict = f"n = {n} < {MIN_PAIRS}" if n < MIN_PAIRS else None
    return Comparison(
        test, delta, low, high, p, finite(result.statistic), finite(result.df), n, no_verdict
    )


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
    comparison: Comparison | None,
    p_adjusted: float | None,
    lower_better: bool,
    alpha: float = ALPHA,
) -> str | None:
    """'better'/'worse' when the adjusted p is below alpha, '≈ noise' otherwise; TOO_FEW when
    the data cannot carry a verdict (Comparison.no_verdict); None without a Δ."""
    delta = None if comparison is None else comparison.delta
    if delta is None:
        return None
    if comparison.no_verdict is not None:
        return TOO_FEW
    if p_adjusted is None:
        return None
    if p_adjusted >= alpha or delta == 0:
        return "≈ noise"
    return "better" if (delta < 0) == lower_better else "worse"
