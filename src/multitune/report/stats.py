"""Multi-task vs single-task statistics: mean ± std over seeds, bootstrap intervals, verdicts.

The interval of a delta is a percentile bootstrap over *test rows and seeds* together: each
resample draws the test rows with replacement (the same rows for both sides, so the
comparison stays paired) and, independently for each side, the seeds with replacement; the
delta is the mean over the drawn multi-task seeds minus the mean over the drawn single-task
seeds, each scored on the drawn rows. A verdict is read off the interval: it excludes zero
on the good side (improves), on the bad side (hurts), or contains zero (no clear difference).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

ScoreFn = Callable[[np.ndarray], float]
"""A run's metric on a set of test rows: indices into the test split (repeats allowed)."""

DeltaM = Callable[[Mapping[str, Mapping[str, float]], Mapping[str, Mapping[str, float]]], float]
"""Δm over nested `{task: {metric: value}}` dicts of multi-task and single-task scores."""

Verdict = Literal["improves", "hurts", "no clear difference"]


@dataclass(frozen=True)
class Scored:
    """One row of the comparison: a task's metric, or a task group's joint metric.

    Attributes:
        name: The task (or group) name.
        metric: The metric's name.
        higher_is_better: Direction of the metric.
        multi: One score function per multi-task seed.
        single: One score function per single-task seed (for a group: the single-task
            models of its tasks combined, seed by seed).
        kind: "task" rows feed Δm; "group" rows are reported only.
    """

    name: str
    metric: str
    higher_is_better: bool
    multi: Sequence[ScoreFn]
    single: Sequence[ScoreFn]
    kind: Literal["task", "group"] = "task"


@dataclass(frozen=True)
class RowResult:
    """The measured comparison of one `Scored` row."""

    name: str
    metric: str
    kind: str
    higher_is_better: bool
    multi_mean: float
    multi_std: float
    single_mean: float
    single_std: float
    delta: float
    ci_low: float
    ci_high: float
    verdict: Verdict
    multi_values: list[float] = field(default_factory=list)
    single_values: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Comparison:
    """Every row plus Δm overall, with its interval and verdict."""

    rows: list[RowResult]
    delta_m: float
    delta_m_low: float
    delta_m_high: float
    verdict: Verdict
    n_test: int
    bootstrap_samples: int
    confidence: float
    method: str = "percentile bootstrap over test rows and seeds (paired rows)"


def verdict(low: float, high: float, higher_is_better: bool = True) -> Verdict:
    """Read a verdict off an interval of `multi - single`.

    Args:
        low: Lower end of the interval.
        high: Upper end.
        higher_is_better: Whether a positive delta is an improvement.

    Returns:
        "improves" when the whole interval lies on the good side of zero, "hurts" when it lies
        on the bad side, "no clear difference" otherwise.
    """
    if not (np.isfinite(low) and np.isfinite(high)):
        return "no clear difference"
    good_low, good_high = (low, high) if higher_is_better else (-high, -low)
    if good_low > 0:
        return "improves"
    if good_high < 0:
        return "hurts"
    return "no clear difference"


def _std(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def compare(
    rows: Sequence[Scored],
    n_test: int,
    delta_m: DeltaM,
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Measure every row and Δm over the task rows, with bootstrap intervals.

    Args:
        rows: What to compare (see `Scored`).
        n_test: Number of rows in the test split (score functions take indices below it).
        delta_m: Δm of `{task: {metric: value}}` multi vs single (the training library's).
        samples: Bootstrap resamples.
        confidence: Two-sided level of the intervals.
        seed: Seed of the resampling.

    Returns:
        The comparison; every number in it is computed from the score functions.
    """
    rng = np.random.default_rng(seed)
    everything = np.arange(n_test)
    point_multi = [[fn(everything) for fn in r.multi] for r in rows]
    point_single = [[fn(everything) for fn in r.single] for r in rows]

    deltas = np.full((samples, len(rows)), np.nan)
    dms = np.full(samples, np.nan)
    for b in range(samples):
        idx = rng.integers(0, n_test, n_test)
        mt_nested: dict[str, dict[str, float]] = {}
        st_nested: dict[str, dict[str, float]] = {}
        for j, r in enumerate(rows):
            ms = rng.integers(0, len(r.multi), len(r.multi))
            ss = rng.integers(0, len(r.single), len(r.single))
            m = _mean_over(r.multi, ms, idx)
            s = _mean_over(r.single, ss, idx)
            deltas[b, j] = m - s
            if r.kind == "task":
                mt_nested.setdefault(r.name, {})[r.metric] = m
                st_nested.setdefault(r.name, {})[r.metric] = s
        if mt_nested:
            dms[b] = _safe_delta_m(delta_m, mt_nested, st_nested)

    alpha = (1.0 - confidence) / 2.0
    results: list[RowResult] = []
    for j, r in enumerate(rows):
        low, high = _interval(deltas[:, j], alpha)
        mm, sm = float(np.mean(point_multi[j])), float(np.mean(point_single[j]))
        results.append(
            RowResult(
                name=r.name,
                metric=r.metric,
                kind=r.kind,
                higher_is_better=r.higher_is_better,
                multi_mean=mm,
                multi_std=_std(point_multi[j]),
                single_mean=sm,
                single_std=_std(point_single[j]),
                delta=mm - sm,
                ci_low=low,
                ci_high=high,
                verdict=verdict(low, high, r.higher_is_better),
                multi_values=[float(v) for v in point_multi[j]],
                single_values=[float(v) for v in point_single[j]],
            )
        )
    mt: dict[str, dict[str, float]] = {}
    st: dict[str, dict[str, float]] = {}
    for res in results:
        if res.kind == "task":
            mt.setdefault(res.name, {})[res.metric] = res.multi_mean
            st.setdefault(res.name, {})[res.metric] = res.single_mean
    dm = _safe_delta_m(delta_m, mt, st) if mt else float("nan")
    dm_low, dm_high = _interval(dms, alpha)
    return Comparison(
        rows=results,
        delta_m=dm,
        delta_m_low=dm_low,
        delta_m_high=dm_high,
        verdict=verdict(dm_low, dm_high, True),
        n_test=n_test,
        bootstrap_samples=samples,
        confidence=confidence,
    )


def _mean_over(fns: Sequence[ScoreFn], picks: np.ndarray, idx: np.ndarray) -> float:
    cache: dict[int, float] = {}
    total = 0.0
    for p in picks.tolist():
        if p not in cache:
            cache[p] = float(fns[p](idx))
        total += cache[p]
    return total / len(picks)


def _safe_delta_m(
    fn: DeltaM, mt: Mapping[str, Mapping[str, float]], st: Mapping[str, Mapping[str, float]]
) -> float:
    try:
        return float(fn(mt, st))
    except (ZeroDivisionError, FloatingPointError, ValueError):
        return float("nan")


def _interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)
