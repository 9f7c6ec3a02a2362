"""Multi-task vs single-task statistics: mean ± std over seeds, bootstrap intervals, verdicts.

Method. Each of the `samples` bootstrap replicates makes one joint draw and scores every row
and Δm on it: the test rows are drawn once (the same rows for both sides and the reference,
so every comparison is paired), the multi-task seeds are drawn once with replacement and the
single-task seeds once with replacement, and these same draws serve every row (every task,
metric and group) and Δm, so a replicate never mixes seeds across metrics. The test rows are
drawn as whole clusters (`groups`: the rows of one group or duplicate set), as many clusters
as there are, with replacement (`bootstrap.RowDraw`); without groups every row is its own
cluster. A row's side in a replicate is the mean, over the drawn seeds, of that seed's score
on the drawn rows; its delta is multi minus single. The linear reference is one
deterministic fit: it is scored on the drawn rows and has no seeds to draw. A raw interval is
the percentile interval (`confidence`, two-sided) of the replicates. Point estimates use the
full test split and every seed.

Verdicts hold a family-wise error rate. The family is the rows that produce a task or group
verdict (the first row of each name: the primary metric); their verdicts are read off
step-down max-|t| intervals built from the same replicates (`adjust`), so that the chance of any
false "improves" or "hurts" among them is about 1 - `confidence`. Other rows keep their raw
interval. Δm's verdict is one test and is not adjusted.

Δm: see `deltam`. The (task, metric) pairs that enter it should be fixed by the caller on
validation (`dm_pairs_from`, passed as `dm_pairs`); without them they are chosen, as before,
from the full-split test means. The point Δm and every replicate use exactly the pairs in
`Comparison.dm_metrics`; a replicate in which one of them has a single-task value below
`MIN_BASELINE` in magnitude has no Δm and counts as non-finite.

No replicate is dropped silently: the replicates whose value is not finite (a metric
undefined on the drawn rows, such as AUROC with one class) are counted (`RowResult.nonfinite`,
`RowResult.floor_nonfinite`, `Comparison.dm_nonfinite`). The interval is read off the finite
replicates; when more than `MAX_NONFINITE` (5%) of them are not finite, the interval is NaN
and the verdict "no clear difference".

A verdict is read off an interval of multi minus single: it excludes zero on the good side
(improves), on the bad side (hurts), or contains zero (no clear difference). The floor: the
single-task network (`Scored.network`, else `single`) is below it when the interval of
network minus reference lies wholly on the bad side of zero (`below_floor`, a diagnostic);
the chosen single-task side the same way (`chosen_below_floor`, which voids a verdict).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from multitune.report.adjust import METHOD as ADJUSTMENT_METHOD
from multitune.report.adjust import simultaneous_intervals
from multitune.report.bootstrap import (
    RowDraw,
    percentile_interval,
    seed_weights,
    weighted_score,
)
from multitune.report.comparison import (
    MAX_NONFINITE,
    MIN_BASELINE,
    NAN,
    Comparison,
    DeltaM,
    RowResult,
    Scored,
    ScoreFn,
    Verdict,
    verdict,
)
from multitune.report.deltam import delta_m_over, dm_pairs_from, pairs_from_test, pairs_given

__all__ = [
    "MAX_NONFINITE",
    "MIN_BASELINE",
    "Comparison",
    "DeltaM",
    "RowResult",
    "ScoreFn",
    "Scored",
    "Verdict",
    "compare",
    "dm_pairs_from",
    "verdict",
]


@dataclass(frozen=True)
class _Scores:
    """Each row's scores. Point: (rows, seeds) on the full split, `ref` (rows,). Replicates:
    (samples, rows), seeds already averaged."""

    multi: np.ndarray
    single: np.ndarray
    network: np.ndarray
    ref: np.ndarray


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
    groups: np.ndarray | None = None,
    dm_pairs: Sequence[tuple[str, str]] | None = None,
) -> Comparison:
    """Measure every row and Δm over the task rows, with joint bootstrap intervals.

    The procedure is the module docstring's. The final stage passes the split's group ids
    as `groups` and the Δm pairs chosen on validation (`dm_pairs_from`) as `dm_pairs`.

    Args:
        rows: What to compare (see `Scored`); every row has the same number of multi-task
            seeds, and the same number of single-task seeds (and of network seeds, if given).
        n_test: Number of rows in the test split (score functions take indices below it).
        delta_m: Δm of `{task: {metric: value}}` multi vs single (the training library's).
        samples: Bootstrap replicates.
        confidence: Two-sided level of the intervals (family-wise for the verdict rows).
        seed: Seed of the resampling.
        min_baseline: Smallest |single-task value| a task metric may have in Δm.
        floor_tolerance: How far (in the metric's units) a network may trail the linear
            reference before it counts as below it: ``below_floor`` needs the whole interval
            of ``network - reference`` beyond ``-floor_tolerance`` on the bad side.
        groups: Cluster id of each test row (length `n_test`): a replicate draws whole
            clusters. None: every row is its own cluster. Fewer than two clusters: rows are
            resampled one by one, and `Comparison.groups_fallback` says so.
        dm_pairs: The (task, metric) pairs in Δm, fixed beforehand on validation. A pair
            with no task row or a non-finite test value is excluded with the reason. None:
            chosen from the full-split test means (the older rule, kept for callers that
            have no validation values).

    Returns:
        The comparison; every number in it is computed from the score functions.

    Raises:
        ValueError: a row without seeds, rows with different numbers of seeds, two task
            rows for the same task and metric, or `groups` of the wrong length.
    """
    n_multi, n_single = _seed_counts(rows)
    draw = RowDraw.of(groups, n_test)
    point = _point_scores(rows, n_test)
    multi_mean, single_mean = point.multi.mean(1), point.single.mean(1)
    if dm_pairs is None:
        in_dm, excluded = pairs_from_test(rows, multi_mean, single_mean, min_baseline)
    else:
        in_dm, excluded = pairs_given(rows, dm_pairs, multi_mean, single_mean)

    rng = np.random.default_rng(seed)
    reps = _replicate_scores(rows, draw, rng, samples, n_multi, n_single)
    alpha = (1.0 - confidence) / 2.0
    results, critical = _row_results(rows, point, reps, alpha, confidence, floor_tolerance)
    family = [r.name for r in results if r.in_family]

    dm, dm_low, dm_high, dm_nonfinite = _delta_m(
        delta_m, rows, in_dm, point, reps, alpha, min_baseline
    )
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
        method=(
            f"percentile bootstrap; each replicate draws {draw.describe()} once and each "
            "side's seeds once, shared by every metric and Δm (paired rows)"
        ),
        n_groups=draw.n_groups,
        resample_unit=draw.unit,
        groups_fallback=draw.fallback,
        dm_chosen_on="test" if dm_pairs is None else "validation",
        family=family,
        adjustment=_adjustment_text(len(family), confidence, critical),
        adjustment_critical=critical,
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
        if r.network is not None and len(r.network) != n_single:
            raise ValueError(
                f"{label} has {len(r.network)} network seeds and {n_single} single-task "
                "seeds: the single-task network's seeds are drawn with the single-task side's "
                "draw, so pass the chosen side once per network seed"
            )
        if r.kind == "task":
            if (r.name, r.metric) in seen:
                raise ValueError(f"{label} appears twice")
            seen.add((r.name, r.metric))
    return n_multi, n_single


def _point_scores(rows: Sequence[Scored], n_test: int) -> _Scores:
    everything = np.arange(n_test)
    multi = np.array([[fn(everything) for fn in r.multi] for r in rows], float)
    single = np.array([[fn(everything) for fn in r.single] for r in rows], float)
    network = single.copy()
    for j, r in enumerate(rows):
        if r.network is not None:
            network[j] = [fn(everything) for fn in r.network]
    ref = np.array([NAN if r.reference is None else r.reference(everything) for r in rows])
    if not rows:
        multi = single = network = np.zeros((0, 1))
    return _Scores(multi, single, network, ref)


def _replicate_scores(
    rows: Sequence[Scored],
    draw: RowDraw,
    rng: np.random.Generator,
    samples: int,
    n_multi: int,
    n_single: int,
) -> _Scores:
    shape = (samples, len(rows))
    multi, single, ref = np.full(shape, NAN), np.full(shape, NAN), np.full(shape, NAN)
    network = np.full(shape, NAN)
    for b in range(samples):
        # One draw per replicate, shared by every row and by Δm.
        idx = draw.draw(rng)
        m_weights = seed_weights(rng, n_multi)
        s_weights = seed_weights(rng, n_single)
        for j, r in enumerate(rows):
            multi[b, j] = weighted_score(r.multi, m_weights, idx)
            single[b, j] = weighted_score(r.single, s_weights, idx)
            if r.reference is not None:
                ref[b, j] = float(r.reference(idx))
                if r.network is not None:  # only the floor needs the network's replicates
                    network[b, j] = weighted_score(r.network, s_weights, idx)
    own = [j for j, r in enumerate(rows) if r.network is None]
    network[:, own] = single[:, own]
    return _Scores(multi, single, network, ref)


def _row_results(
    rows: Sequence[Scored],
    point: _Scores,
    reps: _Scores,
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
    point: _Scores,
    reps: _Scores,
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


def _delta_m(
    fn: DeltaM,
    rows: Sequence[Scored],
    in_dm: Sequence[int],
    point: _Scores,
    reps: _Scores,
    alpha: float,
    min_baseline: float,
) -> tuple[float, float, float, int]:
    """Δm of the full-split means, its percentile interval and its non-finite replicates."""
    if not in_dm:
        return NAN, NAN, NAN, 0
    dm = delta_m_over(fn, rows, in_dm, point.multi.mean(1), point.single.mean(1), min_baseline)
    dms = np.array(
        [
            delta_m_over(fn, rows, in_dm, m, s, min_baseline)
            for m, s in zip(reps.multi, reps.single, strict=True)
        ]
    )
    low, high = percentile_interval(dms, alpha)
    return dm, low, high, int((~np.isfinite(dms)).sum())


def _adjustment_text(size: int, confidence: float, critical: float) -> str:
    pct = f"{round(confidence * 100):d}%"
    if size == 0:
        return "no task or group verdicts: nothing to adjust"
    factor = (
        f"; critical value {critical:.2f} bootstrap SEs at the first step, smaller at later ones"
        if np.isfinite(critical)
        else ""
    )
    return (
        f"family-wise {pct} over {size} verdict{'s' if size != 1 else ''}, the primary metric "
        f"of each task and group, by {ADJUSTMENT_METHOD}{factor}"
    )


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
