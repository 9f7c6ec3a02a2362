"""Family-wise error control for the per-task verdicts: simultaneous bootstrap intervals.

With one verdict per task, the chance that at least one of them claims a difference that is
noise grows with the number of tasks (five independent 95% intervals: about 23%). The
single-step max-|t| method (Romano & Wolf, 2005, "Exact and approximate stepdown methods
for multiple hypothesis testing", JASA) widens every interval of the family by one common
factor, read off the same bootstrap replicates:

    sd_j = std over replicates b of delta_bj              (finite replicates only)
    T_b  = max_j |delta_bj - delta_hat_j| / sd_j
    c    = the `confidence` quantile of T_b
    interval_j = delta_hat_j ± c * sd_j

Then all family intervals hold together with probability `confidence`, so the chance of any
false "improves" or "hurts" in the family is at most 1 - `confidence` (asymptotically); the
max over the family keeps the correlation between tasks (one joint draw per replicate), so
it is less conservative than Bonferroni. With one member, c is the ordinary two-sided
quantile of |t| and the interval is close to the raw percentile one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multitune.report.bootstrap import usable
from multitune.report.comparison import NAN

METHOD = "single-step simultaneous max-|t| bootstrap intervals (Romano & Wolf 2005)"
"""The adjustment in a phrase, for the report."""

_FLAT = 1e-9
"""A spread below this (relative to max(1, |delta|)) is rounding, not sampling noise."""


@dataclass(frozen=True)
class Simultaneous:
    """Adjusted intervals of the family members, in the order given.

    Attributes:
        low: Lower ends (NaN where the raw interval is not reported).
        high: Upper ends.
        critical: The common factor c (NaN when no member has a spread).
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
    with np.errstate(invalid="ignore"):
        t = np.abs(replicates[:, spread] - point[spread]) / sd[spread]
    t[~np.isfinite(t)] = -np.inf  # an undefined member does not raise a replicate's max
    worst = t.max(axis=1)
    worst = worst[np.isfinite(worst)]
    if worst.size == 0:
        return Simultaneous(low, high, NAN)
    critical = float(np.quantile(worst, confidence))
    low[spread] = point[spread] - critical * sd[spread]
    high[spread] = point[spread] + critical * sd[spread]
    return Simultaneous(low, high, critical)
