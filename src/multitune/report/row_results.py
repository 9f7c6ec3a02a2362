"""Each row's result for `multitune.report.stats.compare`, read off its point and replicate
scores: the raw percentile interval of multi minus single, the family-wise adjusted one its
verdict is read off (`multitune.report.adjust`), and the floor diagnostics against the
linear reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from multitune.report.adjust import simultaneous_intervals
from multitune.report.bootstrap import percentile_interval
from multitune.report.comparison import NAN, RowResult, Scored, verdict
from multitune.report.replicates import Scores


def row_results(
    rows: Sequence[Scored],
    point: Scores,
    reps: Scores,
    alpha: float,
    confidence: float,
    tolerance: float,
) -> tuple[list[RowResult], float]:
    """Each row's result, and the family-wise adjustment's critical value."""
    deltas = reps.multi - reps.single
    raw = np.array([percentile_interval(deltas[:, j], alpha) for j in range(len(rows))])
    raw = raw.reshape(len(rows), 2)
    adj = raw.copy()
    family = _family(rows)
    critical = NAN
    if family:
        point_delta = point.multi.mean(1) - point.single.mean(1)
        sim = simultaneous_intervals(
            point_delta[family], deltas[:, family], raw[family, 0], raw[family, 1], confidence
        )
        adj[family, 0], adj[family, 1] = sim.low, sim.high
        critical = sim.critical
    results = [
        _row_result(r, j, point, reps, raw[j], adj[j], j in family, alpha, tolerance)
        for j, r in enumerate(rows)
    ]
    return results, critical


def _family(rows: Sequence[Scored]) -> list[int]:
    """The rows that produce a task or group verdict: the first row of each name."""
    first: dict[str, int] = {}
    for j, r in enumerate(rows):
        first.setdefault(r.name, j)
    return list(first.values())


def _row_result(
    r: Scored,
    j: int,
    point: Scores,
    reps: Scores,
    raw: np.ndarray,
    adj: np.ndarray,
    in_family: bool,
    alpha: float,
    tolerance: float,
) -> RowResult:
    mm, sm = float(np.mean(point.multi[j])), float(np.mean(point.single[j]))
    floor_low = floor_high = NAN
    below = multi_below = chosen_below = False
    floor_nonfinite = 0
    if r.reference is not None:
        floor = reps.network[:, j] - reps.ref[:, j]
        floor_low, floor_high, below = _floor(floor, alpha, tolerance, r.higher_is_better)
        floor_nonfinite = int((~np.isfinite(floor)).sum())
        multi_floor = reps.multi[:, j] - reps.ref[:, j]
        multi_below = _floor(multi_floor, alpha, tolerance, r.higher_is_better)[2]
        chosen_floor = reps.single[:, j] - reps.ref[:, j]
        chosen_below = _floor(chosen_floor, alpha, tolerance, r.higher_is_better)[2]
    low, high = float(raw[0]), float(raw[1])
    raw_verdict = verdict(low, high, r.higher_is_better)
    return RowResult(
        name=r.name,
        metric=r.metric,
        kind=r.kind,
        higher_is_better=r.higher_is_better,
        multi_mean=mm,
        multi_std=_std(point.multi[j]),
        single_mean=sm,
        single_std=_std(point.single[j]),
        delta=mm - sm,
        ci_low=low,
        ci_high=high,
        verdict=verdict(float(adj[0]), float(adj[1]), r.higher_is_better),
        multi_values=[float(v) for v in point.multi[j]],
        single_values=[float(v) for v in point.single[j]],
        reference=float(point.ref[j]),
        floor_low=floor_low,
        floor_high=floor_high,
        below_floor=below,
        multi_below_floor=multi_below,
        nonfinite=int((~np.isfinite(reps.multi[:, j] - reps.single[:, j])).sum()),
        floor_nonfinite=floor_nonfinite,
        adj_low=float(adj[0]),
        adj_high=float(adj[1]),
        raw_verdict=raw_verdict,
        in_family=in_family,
        network_mean=float(np.mean(point.network[j])),
        network_values=[float(v) for v in point.network[j]],
        single_kind=r.single_kind,
        chosen_below_floor=chosen_below,
    )


def _floor(
    diff: np.ndarray, alpha: float, tolerance: float, higher_is_better: bool
) -> tuple[float, float, bool]:
    """Interval of `side - reference` and whether it lies beyond the tolerance on the bad
    side."""
    low, high = percentile_interval(diff, alpha)
    shift = tolerance if higher_is_better else -tolerance
    return low, high, verdict(low + shift, high + shift, higher_is_better) == "hurts"


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
