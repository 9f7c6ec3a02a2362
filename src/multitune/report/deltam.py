"""Which (task, metric) pairs enter Δm, and Δm over exactly those pairs.

Δm is LibMTL's (Maninis et al., 2019; Lin & Zhang, 2023, "LibMTL", eq. 4: the mean over
tasks of the mean over the task's metrics of the sign-corrected relative change against the
single-task value); the function itself is the training library's, passed in. A relative
change against a single-task value near zero is unstable or undefined, so a pair whose
single-task value is not finite or smaller than `MIN_BASELINE` in magnitude is left out, with
the reason.

The pairs should be chosen on validation (`dm_pairs_from`), so that the test split decides
nothing; `pairs_from_test` keeps the older rule (the full-split test means) for callers that
do not pass any.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from multitune.report.comparison import MIN_BASELINE, NAN, DeltaM, Scored

Pair = tuple[str, str]
Excluded = tuple[str, str, str]


def dm_pairs_from(
    single_val: Mapping[str, Mapping[str, float]],
    rows_or_pairs: Sequence[Scored] | Sequence[Pair],
    min_baseline: float = MIN_BASELINE,
) -> tuple[list[Pair], list[Excluded]]:
    """Choose the Δm pairs on the single-task VALIDATION means.

    Args:
        single_val: `{task: {metric: value}}`: the single-task side's validation means.
        rows_or_pairs: The candidate pairs: the comparison's rows (task rows only; group
            rows never enter Δm) or (task, metric) pairs.
        min_baseline: Smallest |validation value| a pair may have.

    Returns:
        The chosen pairs, in the given order, and the excluded ones as (task, metric,
        reason). Pass the first to `compare(dm_pairs=...)`.
    """
    chosen: list[Pair] = []
    excluded: list[Excluded] = []
    for task, metric in _pairs(rows_or_pairs):
        value = single_val.get(task, {}).get(metric)
        if value is None:
            excluded.append((task, metric, "no single-task validation value"))
        elif not math.isfinite(value):
            excluded.append((task, metric, "single-task validation value is not finite"))
        elif abs(value) < min_baseline:
            reason = (
                f"|single-task validation value| {abs(value):.3g} < MIN_BASELINE {min_baseline:g}"
            )
            excluded.append((task, metric, reason))
        else:
            chosen.append((task, metric))
    return chosen, excluded


def pairs_from_test(
    rows: Sequence[Scored], multi: np.ndarray, single: np.ndarray, min_baseline: float
) -> tuple[list[int], list[Excluded]]:
    """The older rule on the full-split test means: which task rows enter Δm (indices)."""
    chosen: list[int] = []
    excluded: list[Excluded] = []
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


def pairs_given(
    rows: Sequence[Scored], pairs: Sequence[Pair], multi: np.ndarray, single: np.ndarray
) -> tuple[list[int], list[Excluded]]:
    """The task rows of pairs fixed beforehand (indices); a pair with no task row, or whose
    test value is not finite, is excluded with the reason."""
    where = {(r.name, r.metric): j for j, r in enumerate(rows) if r.kind == "task"}
    chosen: list[int] = []
    excluded: list[Excluded] = []
    for task, metric in dict.fromkeys(pairs):
        j = where.get((task, metric))
        if j is None:
            excluded.append((task, metric, "no task row on the test split"))
        elif not math.isfinite(float(single[j])):
            excluded.append((task, metric, "single-task test value is not finite"))
        elif not math.isfinite(float(multi[j])):
            excluded.append((task, metric, "multi-task test value is not finite"))
        else:
            chosen.append(j)
    return chosen, excluded


def delta_m_over(
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
            return NAN
        mt.setdefault(rows[j].name, {})[rows[j].metric] = float(multi[j])
        st.setdefault(rows[j].name, {})[rows[j].metric] = s
    try:
        return float(fn(mt, st))
    except (ZeroDivisionError, FloatingPointError, ValueError):
        return NAN


def _pairs(rows_or_pairs: Sequence[Scored] | Sequence[Pair]) -> list[Pair]:
    out: list[Pair] = []
    for item in rows_or_pairs:
        if isinstance(item, Scored):
            if item.kind == "task":
                out.append((item.name, item.metric))
        else:
            out.append((item[0], item[1]))
    return list(dict.fromkeys(out))
