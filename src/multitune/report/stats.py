"""Multi-task vs single-task statistics: mean ± std over seeds, bootstrap intervals, verdicts.

Method. Each of the `samples` bootstrap replicates makes one joint draw and scores every row
and Δm on it: the test rows are drawn once with replacement (the same rows for both sides and
the reference, so every comparison is paired), the multi-task seeds are drawn once with
replacement and the single-task seeds once with replacement, and these same draws serve every
row (every task, metric and group) and Δm, so a replicate never mixes seeds across metrics.
A row's side in a replicate is the mean, over the drawn seeds, of that seed's score on the
drawn rows; its delta is multi minus single. The linear reference is one deterministic fit:
it is scored on the drawn rows and has no seeds to draw. An interval is the percentile
interval (`confidence`, two-sided) of the replicates. Point estimates use the full test split
and every seed.

Δm is LibMTL's (mean over tasks of the mean over the task's metrics of the sign-corrected
relative change against the single-task value). Which (task, metric) pairs enter it is
decided once, from the full-split single-task means: a pair whose single-task (or multi-task)
mean is not finite, or whose single-task mean is smaller than `MIN_BASELINE` in magnitude
(a relative change against ~0 is unstable or undefined), is left out and listed with the
reason in `Comparison.dm_excluded`. The point Δm and every replicate use exactly the pairs
in `Comparison.dm_metrics`; a replicate in which one of them has a single-task value below
`MIN_BASELINE` in magnitude has no Δm and counts as non-finite.

No replicate is dropped silently: the replicates whose value is not finite (a metric
undefined on the drawn rows, such as AUROC with one class) are counted (`RowResult.nonfinite`,
`RowResult.floor_nonfinite`, `Comparison.dm_nonfinite`). The interval is read off the finite
replicates; when more than `MAX_NONFINITE` (5%) of them are not finite, the interval is NaN
and the verdict "no clear difference".

A verdict is read off an interval of multi minus single: it excludes zero on the good side
(improves), on the bad side (hurts), or contains zero (no clear difference). A row is below
the floor when the interval of single minus reference lies wholly on the bad side of zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

ScoreFn = Callable[[np.ndarray], float]
"""A run's metric on a set of test rows: indices into the test split (repeats allowed)."""

DeltaM = Callable[[Mapping[str, Mapping[str, float]], Mapping[str, Mapping[str, float]]], float]
"""Δm over nested `{task: {metric: value}}` dicts of multi-task and single-task scores."""

Verdict = Literal["improves", "hurts", "no clear difference"]

MIN_BASELINE = 1e-3
"""Smallest |single-task value| a metric may have to enter Δm (as
`multitune.training.metrics.MIN_BASELINE`, which this pure package does not import)."""

MAX_NONFINITE = 0.05
"""Largest share of non-finite replicates an interval may be read from; above it: NaN."""

_NAN = float("nan")


@dataclass(frozen=True)
class Scored:
    """One row of the comparison: a task's metric, or a task group's joint metric.

    Attributes:
        name: The task (or group) name.
        metric: The metric's name.
        higher_is_better: Direction of the metric.
        multi: One score function per multi-task seed (the same number on every row).
        single: One score function per single-task seed (the same number on every row; for
            a group: the single-task models of its tasks combined, seed by seed).
        kind: "task" rows feed Δm; "group" rows are reported only.
        reference: The linear reference's score function (one deterministic fit), or None.
    """

    name: str
    metric: str
    higher_is_better: bool
    multi: Sequence[ScoreFn]
    single: Sequence[ScoreFn]
    kind: Literal["task", "group"] = "task"
    reference: ScoreFn | None = None


@dataclass(frozen=True)
class RowResult:
    """The measured comparison of one `Scored` row.

    Attributes:
        name: The task (or group) name.
        metric: The metric's name.
        kind: "task" or "group".
        higher_is_better: Direction of the metric.
        multi_mean: Mean over multi-task seeds of the full-split score.
        multi_std: Their sample standard deviation (0 with one seed).
        single_mean: Mean over single-task seeds of the full-split score.
        single_std: Their sample standard deviation (0 with one seed).
        delta: `multi_mean - single_mean`.
        ci_low: Lower end of the bootstrap interval of the delta.
        ci_high: Upper end.
        verdict: Read off the interval (`verdict`).
        multi_values: Full-split score of each multi-task seed.
        single_values: Full-split score of each single-task seed.
        reference: The reference's full-split score; NaN without a reference.
        floor_low: Lower end of the interval of `single - reference`; NaN without one.
        floor_high: Upper end.
        below_floor: The single-task network is worse than the reference beyond the interval.
        multi_below_floor: The same for the multi-task network (`multi - reference`).
        nonfinite: Replicates whose delta is not finite.
        floor_nonfinite: Replicates whose `single - reference` is not finite.
    """

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
    reference: float = _NAN
    floor_low: float = _NAN
    floor_high: float = _NAN
    below_floor: bool = False
    multi_below_floor: bool = False
    nonfinite: int = 0
    floor_nonfinite: int = 0


@dataclass(frozen=True)
class Comparison:
    """Every row plus Δm over the task rows, with its interval and verdict.

    Attributes:
        rows: One result per `Scored` row, in order.
        delta_m: Δm of the full-split means over `dm_metrics` (the `delta_m` given's units).
        delta_m_low: Lower end of its bootstrap interval.
        delta_m_high: Upper end.
        verdict: Read off the Δm interval (higher is better).
        n_test: Rows in the test split.
        bootstrap_samples: Replicates drawn.
        confidence: Two-sided level of every interval.
        dm_metrics: The (task, metric) pairs in Δm, for the point and every replicate.
        dm_excluded: The task pairs left out of Δm: (task, metric, reason).
        dm_nonfinite: Replicates whose Δm is not finite.
        min_baseline: The `MIN_BASELINE` used.
        floor_tolerance: How far a network may trail the linear reference (metric units)
            before it counts as below it.
        method: The procedure in one line (the module docstring states it in full).
    """

    rows: list[RowResult]
    delta_m: float
    delta_m_low: float
    delta_m_high: float
    verdict: Verdict
    n_test: int
    bootstrap_samples: int
    confidence: float
    dm_metrics: list[tuple[str, str]] = field(default_factory=list)
    dm_excluded: list[tuple[str, str, str]] = field(default_factory=list)
    dm_nonfinite: int = 0
    min_baseline: float = MIN_BASELINE
    floor_tolerance: float = 0.0
    method: str = (
        "percentile bootstrap; each replicate draws the test rows once and each side's seeds "
        "once, shared by every metric and Δm (paired rows)"
    )


def verdict(low: float, high: float, higher_is_better: bool = True) -> Verdict:
    """Read a verdict off an interval of `multi - single`.

    Args:
        low: Lower end of the interval.
        high: Upper end.
        higher_is_better: Whether a positive delta is an improvement.

    Returns:
        "improves" when the whole interval lies on the good side of zero, "hurts" when it lies
        on the bad side, "no clear difference" otherwise (and for a NaN interval).
    """
    if not (np.isfinite(low) and np.isfinite(high)):
        return "no clear difference"
    good_low, good_high = (low, high) if higher_is_better else (-high, -low)
    if good_low > 0:
        return "improves"
    if good_high < 0:
        return "hurts"
    return "no clear difference"


def compare(
    rows: Sequence[Scored],
    n_test: int,
    delta_m: DeltaM,
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    min_baseline: float = MIN_BASELINE,
    floor_tolerance: float = 0.0,
) -> Comparison:
    """Measure every row and Δm over the task rows, with joint bootstrap intervals.

    The procedure is the module docstring's.

    Args:
        rows: What to compare (see `Scored`); every row has the same number of multi-task
            seeds, and the same number of single-task seeds.
        n_test: Number of rows in the test split (score functions take indices below it).
        delta_m: Δm of `{task: {metric: value}}` multi vs single (the training library's).
        samples: Bootstrap replicates.
        confidence: Two-sided level of the intervals.
        seed: Seed of the resampling.
        min_baseline: Smallest |single-task mean| a task metric may have to enter Δm.
        floor_tolerance: How far (in the metric's units) a network may trail the linear
            reference before it counts as below it: ``below_floor`` needs the whole interval
            of ``single - reference`` beyond ``-floor_tolerance`` on the bad side.

    Returns:
        The comparison; every number in it is computed from the score functions.

    Raises:
        ValueError: a row without seeds, rows with different numbers of seeds, or two task
            rows for the same task and metric.
    """
    n_multi, n_single = _seed_counts(rows)
    rng = np.random.default_rng(seed)
    everything = np.arange(n_test)
    point_multi = np.array([[fn(everything) for fn in r.multi] for r in rows], float)
    point_single = np.array([[fn(everything) for fn in r.single] for r in rows], float)
    point_ref = np.array([_NAN if r.reference is None else r.reference(everything) for r in rows])
    multi_mean = point_multi.mean(1) if rows else np.zeros(0)
    single_mean = point_single.mean(1) if rows else np.zeros(0)
    in_dm, excluded = _dm_pairs(rows, multi_mean, single_mean, min_baseline)

    shape = (samples, len(rows))
    multi_b, single_b, ref_b = np.full(shape, _NAN), np.full(shape, _NAN), np.full(shape, _NAN)
    dms = np.full(samples, _NAN)
    for b in range(samples):
        # One draw per replicate, shared by every row and by Δm.
        idx = rng.integers(0, n_test, n_test)
        m_weights = _pick_weights(rng, n_multi)
        s_weights = _pick_weights(rng, n_single)
        for j, r in enumerate(rows):
            multi_b[b, j] = _weighted_score(r.multi, m_weights, idx)
            single_b[b, j] = _weighted_score(r.single, s_weights, idx)
            if r.reference is not None:
                ref_b[b, j] = float(r.reference(idx))
        if in_dm:
            dms[b] = _dm_of(delta_m, rows, in_dm, multi_b[b], single_b[b], min_baseline)

    alpha = (1.0 - confidence) / 2.0
    results = [
        _row_result(
            r,
            point_multi[j],
            point_single[j],
            float(point_ref[j]),
            multi_b[:, j],
            single_b[:, j],
            ref_b[:, j],
            alpha,
            floor_tolerance,
        )
        for j, r in enumerate(rows)
    ]
    if in_dm:
        dm = _dm_of(delta_m, rows, in_dm, multi_mean, single_mean, min_baseline)
        dm_low, dm_high = _interval(dms, alpha)
        dm_nonfinite = int((~np.isfinite(dms)).sum())
    else:
        dm, dm_low, dm_high, dm_nonfinite = _NAN, _NAN, _NAN, 0
    return Comparison(
        rows=results,
        delta_m=dm,
        delta_m_low=dm_low,
        delta_m_high=dm_high,
        verdict=verdict(dm_low, dm_high, True),
        n_test=n_test,
        bootstrap_samples=samples,
        confidence=confidence,
        dm_metrics=[(rows[j].name, rows[j].metric) for j in in_dm],
        dm_excluded=excluded,
        dm_nonfinite=dm_nonfinite,
        min_baseline=min_baseline,
        floor_tolerance=floor_tolerance,
    )


def _seed_counts(rows: Sequence[Scored]) -> tuple[int, int]:
    if not rows:
        return 0, 0
    n_multi, n_single = len(rows[0].multi), len(rows[0].single)
    seen: set[tuple[str, str]] = set()
    for r in rows:
        label = f"{r.kind} row {r.name!r}/{r.metric!r}"
        if not r.multi or not r.single:
            raise ValueError(f"{label} has no multi-task or no single-task seeds")
        if (len(r.multi), len(r.single)) != (n_multi, n_single):
            raise ValueError(
                f"{label} has {len(r.multi)} multi-task and {len(r.single)} single-task seeds, "
                f"the first row {n_multi} and {n_single}: a replicate draws the seeds once for "
                "every row, so every row needs the same numbers"
            )
        if r.kind == "task":
            if (r.name, r.metric) in seen:
                raise ValueError(f"{label} appears twice")
            seen.add((r.name, r.metric))
    return n_multi, n_single


def _dm_pairs(
    rows: Sequence[Scored], multi: np.ndarray, single: np.ndarray, min_baseline: float
) -> tuple[list[int], list[tuple[str, str, str]]]:
    """Which task rows enter Δm (indices), and the excluded ones with the reason."""
    chosen: list[int] = []
    excluded: list[tuple[str, str, str]] = []
    for j, r in enumerate(rows):
        if r.kind != "task":
            continue
        s, m = float(single[j]), float(multi[j])
        if not math.isfinite(s):
            excluded.append((r.name, r.metric, "single-task value is not finite"))
        elif not math.isfinite(m):
            excluded.append((r.name, r.metric, "multi-task value is not finite"))
        elif abs(s) < min_baseline:
            reason = f"|single-task value| {abs(s):.3g} < MIN_BASELINE {min_baseline:g}"
            excluded.append((r.name, r.metric, reason))
        else:
            chosen.append(j)
    return chosen, excluded


def _pick_weights(rng: np.random.Generator, n: int) -> np.ndarray:
    """Share of each seed in a draw of `n` seeds with replacement."""
    return np.bincount(rng.integers(0, n, n), minlength=n) / n


def _weighted_score(fns: Sequence[ScoreFn], weights: np.ndarray, idx: np.ndarray) -> float:
    # Each drawn seed is scored once; repeats only weigh it more.
    total = 0.0
    for k, w in enumerate(weights.tolist()):
        if w > 0:
            total += w * float(fns[k](idx))
    return total


def _dm_of(
    fn: DeltaM,
    rows: Sequence[Scored],
    in_dm: Sequence[int],
    multi: np.ndarray,
    single: np.ndarray,
    min_baseline: float,
) -> float:
    """Δm over exactly the chosen rows; NaN if one of their baselines is unusable here."""
    mt: dict[str, dict[str, float]] = {}
    st: dict[str, dict[str, float]] = {}
    for j in in_dm:
        s = float(single[j])
        if not (math.isfinite(s) and abs(s) >= min_baseline):
            return _NAN
        mt.setdefault(rows[j].name, {})[rows[j].metric] = float(multi[j])
        st.setdefault(rows[j].name, {})[rows[j].metric] = s
    try:
        return float(fn(mt, st))
    except (ZeroDivisionError, FloatingPointError, ValueError):
        return _NAN


def _row_result(
    r: Scored,
    point_multi: np.ndarray,
    point_single: np.ndarray,
    point_ref: float,
    multi_b: np.ndarray,
    single_b: np.ndarray,
    ref_b: np.ndarray,
    alpha: float,
    tolerance: float = 0.0,
) -> RowResult:
    deltas = multi_b - single_b
    low, high = _interval(deltas, alpha)
    mm, sm = float(np.mean(point_multi)), float(np.mean(point_single))
    floor_low = floor_high = _NAN
    below = multi_below = False
    floor_nonfinite = 0
    if r.reference is not None:
        floor = single_b - ref_b
        floor_low, floor_high = _interval(floor, alpha)
        floor_nonfinite = int((~np.isfinite(floor)).sum())
        shift = tolerance if r.higher_is_better else -tolerance
        below = verdict(floor_low + shift, floor_high + shift, r.higher_is_better) == "hurts"
        multi_low, multi_high = _interval(multi_b - ref_b, alpha)
        multi_below = verdict(multi_low + shift, multi_high + shift, r.higher_is_better) == "hurts"
    return RowResult(
        name=r.name,
        metric=r.metric,
        kind=r.kind,
        higher_is_better=r.higher_is_better,
        multi_mean=mm,
        multi_std=_std(point_multi),
        single_mean=sm,
        single_std=_std(point_single),
        delta=mm - sm,
        ci_low=low,
        ci_high=high,
        verdict=verdict(low, high, r.higher_is_better),
        multi_values=[float(v) for v in point_multi],
        single_values=[float(v) for v in point_single],
        reference=point_ref,
        floor_low=floor_low,
        floor_high=floor_high,
        below_floor=below,
        multi_below_floor=multi_below,
        nonfinite=int((~np.isfinite(deltas)).sum()),
        floor_nonfinite=floor_nonfinite,
    )


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    """Percentile interval of the finite replicates; NaN when over `MAX_NONFINITE` are not."""
    finite = values[np.isfinite(values)]
    if finite.size == 0 or values.size - finite.size > MAX_NONFINITE * values.size:
        return _NAN, _NAN
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)
