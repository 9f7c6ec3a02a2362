"""Family-wise error control for the per-task verdicts: step-down max-|t| bootstrap intervals.

With one verdict per task, the chance that at least one of them claims a difference that is
noise grows with the number of tasks (five independent 95% intervals: about 23%). The max-|t|
method (Romano & Wolf, 2005, "Exact and approximate stepdown methods for multiple hypothesis
testing", JASA) reads one common factor off the same bootstrap replicates:

    sd_j = std over replicates b of delta_bj              (finite replicates only)
    T_b  = max_j |delta_bj - delta_hat_j| / sd_j          (over the members still tested)
    c    = the `confidence` quantile of T_b
    interval_j = delta_hat_j ± c * sd_j

Single-step, these intervals hold together with probability `confidence`. Step-down (their
Algorithm 4.1): the members whose interval excludes zero are decided ("improves" / "hurts");
c is then read again over the members left, which is smaller, and so on until a step decides
nothing. Each member keeps the interval of the step that decided it (the last step's for the
undecided), so its verdict is read off its interval as everywhere else. The chance of any
false "improves" or "hurts" in the family stays at most 1 - `confidence` (asymptotically),
with more power than single-step: a task that clearly differs no longer widens the others'
intervals. The max over the family keeps the correlation between tasks (one joint draw per
replicate), so it is less conservative than Bonferroni or Holm. With one member, c is the
ordinary two-sided quantile of |t|.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multitune.report.bootstrap import usable
from multitune.report.comparison import NAN

METHOD = "step-down max-|t| bootstrap intervals (Romano & Wolf 2005)"
"""The adjustment in a phrase, for the report."""

_FLAT = 1e-9
"""A spread below this (relative to max(1, |delta|)) is rounding, not sampling noise."""


@dataclass(frozen=True)
class Simultaneous:
    """Adjusted intervals of the family members, in the order given.

    Attributes:
        low: Lower ends (NaN where the raw interval is not reported).
        high: Upper ends.
        critical: The first step's common factor c, the largest (NaN when no member has a
            spread).
    """

    low: np.ndarray
    high: np.ndarray
    critical: float


def simultaneous_intervals(
    point: np.ndarray,
    replicates: np.ndarray,
    raw_low: np.ndarray,
    raw_high: np.ndarray,
    confidence: float,
) -> Simultaneous:
    """Intervals that hold together for every member of the family.

    Args:
        point: The full-split delta of each member, shape (k,).
        replicates: The members' replicate deltas, shape (samples, k); NaN where undefined.
        raw_low: Each member's raw percentile interval (kept for a member whose replicates
            do not vary: it has no sampling noise to adjust for).
        raw_high: Upper ends.
        confidence: Joint level of the intervals.

    Returns:
        The adjusted intervals and the common factor. A member with too many non-finite
        replicates gets NaN (as its raw interval) and does not enter the max; a member
        that does not vary keeps its raw interval; neither changes the others.
    """
    k = len(point)
    low, high = np.full(k, NAN), np.full(k, NAN)
    sd = np.full(k, NAN)
    for j in range(k):
        column = replicates[:, j]
        if usable(column) and np.isfinite(point[j]):
            finite = column[np.isfinite(column)]
            sd[j] = float(np.std(finite, ddof=1)) if finite.size > 1 else 0.0
    known = np.isfinite(sd)
    spread = known & (sd > _FLAT * np.maximum(1.0, np.abs(np.nan_to_num(point))))
    flat = known & ~spread
    low[flat], high[flat] = raw_low[flat], raw_high[flat]
    if not spread.any():
        return Simultaneous(low, high, NAN)
    active, first = spread.copy(), NAN
    while active.any():
        critical = _critical(point, replicates, sd, active, confidence)
        if not np.isfinite(critical):
            break
        first = critical if not np.isfinite(first) else first
        low[active] = point[active] - critical * sd[active]
        high[active] = point[active] + critical * sd[active]
        decided = active & ((low > 0) | (high < 0))
        if not decided.any():
            break
        active &= ~decided  # the rest are tested again, against a smaller family
    return Simultaneous(low, high, first)


def _critical(
    point: np.ndarray,
    replicates: np.ndarray,
    sd: np.ndarray,
    members: np.ndarray,
    confidence: float,
) -> float:
    """The `confidence` quantile of the max |t| over `members` (NaN: no finite replicate)."""
    with np.errstate(invalid="ignore"):
        t = np.abs(replicates[:, members] - point[members]) / sd[members]
    t[~np.isfinite(t)] = -np.inf  # an undefined member does not raise a replicate's max
    worst = t.max(axis=1)
    worst = worst[np.isfinite(worst)]
    return float(np.quantile(worst, confidence)) if worst.size else NAN
