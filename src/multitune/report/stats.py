"""Multi-task vs single-task statistics: mean ± std over seeds, bootstrap intervals, verdicts.

`compare` runs the procedure below: every row's scores (`multitune.report.replicates`), each
row's intervals and verdict (`multitune.report.row_results`), and Δm's (here).

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
from multitune.report.bootstrap import RowDraw, percentile_interval
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
from multitune.report.deltam import (
    Excluded,
    delta_m_over,
    dm_pairs_from,
    pairs_from_test,
    pairs_given,
)
from multitune.report.replicates import Scores, point_scores, replicate_scores, seed_counts
from multitune.report.row_results import row_results

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
    n_multi, n_single = seed_counts(rows)
    draw = RowDraw.of(groups, n_test)
    point = point_scores(rows, n_test)
    reps = replicate_scores(rows, draw, np.random.default_rng(seed), samples, n_multi, n_single)
    alpha = (1.0 - confidence) / 2.0
    results, critical = row_results(rows, point, reps, alpha, confidence, floor_tolerance)
    family = [r.name for r in results if r.in_family]
    dm = _delta_m(delta_m, rows, dm_pairs, point, reps, alpha, min_baseline)
    return Comparison(
        rows=results,
        delta_m=dm.value,
        delta_m_low=dm.low,
        delta_m_high=dm.high,
        verdict=verdict(dm.low, dm.high, True),
        n_test=n_test,
        bootstrap_samples=samples,
        confidence=confidence,
        dm_metrics=[(rows[j].name, rows[j].metric) for j in dm.rows],
        dm_excluded=dm.excluded,
        dm_nonfinite=dm.nonfinite,
        min_baseline=min_baseline,
        floor_tolerance=floor_tolerance,
        method=_method_text(draw),
        n_groups=draw.n_groups,
        resample_unit=draw.unit,
        groups_fallback=draw.fallback,
        dm_chosen_on="test" if dm_pairs is None else "validation",
        family=family,
        adjustment=_adjustment_text(len(family), confidence, critical),
        adjustment_critical=critical,
    )


@dataclass(frozen=True)
class _DeltaM:
    """Δm's task rows (and the pairs left out, with the reason), the value of the full-split
    means, its percentile interval and its non-finite replicates."""

    rows: list[int]
    excluded: list[Excluded]
    value: float = NAN
    low: float = NAN
    high: float = NAN
    nonfinite: int = 0


def _delta_m(
    fn: DeltaM,
    rows: Sequence[Scored],
    dm_pairs: Sequence[tuple[str, str]] | None,
    point: Scores,
    reps: Scores,
    alpha: float,
    min_baseline: float,
) -> _DeltaM:
    """Δm over the pairs given (`dm_pairs`) or chosen from the full-split test means."""
    multi_mean, single_mean = point.multi.mean(1), point.single.mean(1)
    if dm_pairs is None:
        in_dm, excluded = pairs_from_test(rows, multi_mean, single_mean, min_baseline)
    else:
        in_dm, excluded = pairs_given(rows, dm_pairs, multi_mean, single_mean)
    if not in_dm:
        return _DeltaM(in_dm, excluded)
    dm = delta_m_over(fn, rows, in_dm, multi_mean, single_mean, min_baseline)
    dms = np.array(
        [
            delta_m_over(fn, rows, in_dm, m, s, min_baseline)
            for m, s in zip(reps.multi, reps.single, strict=True)
        ]
    )
    low, high = percentile_interval(dms, alpha)
    return _DeltaM(in_dm, excluded, dm, low, high, int((~np.isfinite(dms)).sum()))


def _method_text(draw: RowDraw) -> str:
    return (
        f"percentile bootstrap; each replicate draws {draw.describe()} once and each "
        "side's seeds once, shared by every metric and Δm (paired rows)"
    )


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
