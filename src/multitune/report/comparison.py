"""The comparison's data: the rows to measure (`Scored`), what is measured (`RowResult`,
`Comparison`) and how a verdict is read off an interval (`verdict`).

`multitune.report.stats.compare` fills them; its module docstring states the procedure.
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

MIN_BASELINE = 1e-3
"""Smallest |single-task value| a metric may have to enter Δm (as
`multitune.training.metrics.MIN_BASELINE`, which this pure package does not import)."""

MAX_NONFINITE = 0.05
"""Largest share of non-finite replicates an interval may be read from; above it: NaN."""

NAN = float("nan")


@dataclass(frozen=True)
class Scored:
    """One row of the comparison: a task's metric, or a task group's joint metric.

    Attributes:
        name: The task (or group) name.
        metric: The metric's name.
        higher_is_better: Direction of the metric.
        multi: One score function per multi-task seed (the same number on every row).
        single: One score function per seed of the chosen single-task side (the same number
            on every row; for a group: the single-task models of its tasks combined, seed by
            seed). When the chosen side is a deterministic model (the tuned linear
            reference), pass its score function repeated once per single-task seed.
        kind: "task" rows feed Δm; "group" rows are reported only.
        reference: The linear reference's score function (one deterministic fit), or None.
        network: One score function per single-task NETWORK seed when `single` is another
            candidate (as many as `single`); None when `single` is the network. The floor
            diagnostic (network vs reference) uses it.
        single_kind: Which model the single-task side is, for the report ("network",
            "linear", ...).
    """

    name: str
    metric: str
    higher_is_better: bool
    multi: Sequence[ScoreFn]
    single: Sequence[ScoreFn]
    kind: Literal["task", "group"] = "task"
    reference: ScoreFn | None = None
    network: Sequence[ScoreFn] | None = None
    single_kind: str = "network"


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
        single_mean: Mean over the chosen single-task side's seeds of the full-split score.
        single_std: Their sample standard deviation (0 with one seed).
        delta: `multi_mean - single_mean`.
        ci_low: Lower end of the raw (unadjusted) percentile interval of the delta.
        ci_high: Upper end.
        verdict: The verdict the report uses: read off the family-wise adjusted interval
            for a family row, off the raw interval otherwise.
        multi_values: Full-split score of each multi-task seed.
        single_values: Full-split score of each seed of the chosen single-task side.
        reference: The reference's full-split score; NaN without a reference.
        floor_low: Lower end of the interval of `network - reference`; NaN without one.
        floor_high: Upper end.
        below_floor: The single-task network is worse than the reference beyond the interval
            (a diagnostic of the network, whichever side was chosen).
        multi_below_floor: The same for the multi-task network (`multi - reference`).
        nonfinite: Replicates whose delta is not finite.
        floor_nonfinite: Replicates whose `network - reference` is not finite.
        adj_low: Lower end of the family-wise adjusted interval (the raw one off the family).
        adj_high: Upper end.
        raw_verdict: Read off the raw interval.
        in_family: Whether the row produces a task or group verdict (see `Comparison.family`).
        network_mean: Mean over single-task network seeds of the full-split score.
        network_values: Full-split score of each network seed (`single_values` when the
            single-task side is the network).
        single_kind: Which model the single-task side is ("network", "linear", ...).
        chosen_below_floor: The chosen single-task side is worse than the reference beyond
            the interval of `single - reference` (never for the reference itself).
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
    reference: float = NAN
    floor_low: float = NAN
    floor_high: float = NAN
    below_floor: bool = False
    multi_below_floor: bool = False
    nonfinite: int = 0
    floor_nonfinite: int = 0
    adj_low: float = NAN
    adj_high: float = NAN
    raw_verdict: Verdict = "no clear difference"
    in_family: bool = False
    network_mean: float = NAN
    network_values: list[float] = field(default_factory=list)
    single_kind: str = "network"
    chosen_below_floor: bool = False


@dataclass(frozen=True)
class Comparison:
    """Every row plus Δm over the task rows, with its interval and verdict.

    Attributes:
        rows: One result per `Scored` row, in order.
        delta_m: Δm of the full-split means over `dm_metrics` (the `delta_m` given's units).
        delta_m_low: Lower end of its bootstrap interval.
        delta_m_high: Upper end.
        verdict: Read off the Δm interval (higher is better); one test, not adjusted.
        n_test: Rows in the test split.
        bootstrap_samples: Replicates drawn.
        confidence: Two-sided level of every interval.
        dm_metrics: The (task, metric) pairs in Δm, for the point and every replicate.
        dm_excluded: The task pairs left out of Δm: (task, metric, reason).
        dm_nonfinite: Replicates whose Δm is not finite.
        min_baseline: The `MIN_BASELINE` used.
        floor_tolerance: How far a network may trail the linear reference (metric units)
            before it counts as below it.
        method: The procedure in one line (the `stats` module docstring states it in full).
        n_groups: Clusters the test rows form (`n_test` when every row is its own).
        resample_unit: "groups" when whole clusters were drawn, "rows" otherwise.
        groups_fallback: Why the groups given were not resampled ("" when they were, or
            when none were given).
        dm_chosen_on: "validation" when the caller fixed the Δm pairs, "test" otherwise.
        family: The names of the rows whose verdicts hold a family-wise error rate: the first
            row of each task and group name (its primary metric), in row order.
        adjustment: The family-wise adjustment in one line.
        adjustment_critical: Its critical value (in bootstrap standard errors); NaN when no
            family member has a spread.
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
    n_groups: int = 0
    resample_unit: Literal["rows", "groups"] = "rows"
    groups_fallback: str = ""
    dm_chosen_on: Literal["validation", "test"] = "test"
    family: list[str] = field(default_factory=list)
    adjustment: str = ""
    adjustment_critical: float = NAN


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
