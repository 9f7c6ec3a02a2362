"""What the reader should conclude: one verdict per task and group, and one overall.

A task's verdict is its primary metric's (the first row of that name; rows come primary-first):
the family-wise adjusted interval verdict of multi minus single (`RowResult.verdict`; the
raw interval's is reported beside it), unless the CHOSEN single-task side scores below the
tuned linear reference beyond the interval (`RowResult.chosen_below_floor`). Then the
baseline is broken, multi-task learning cannot be credited against it, and the verdict is
"not trustworthy". A single-task network below the reference while another model (the
linear one) is the chosen side is said in the reason, as a diagnostic. The overall verdict
is Δm's, unless some task is not trustworthy: then it is "not trustworthy" and names those
tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from multitune.report.stats import Comparison, RowResult

TaskVerdictWord = Literal["improves", "hurts", "no clear difference", "not trustworthy"]

NOT_TRUSTWORTHY: TaskVerdictWord = "not trustworthy"


@dataclass(frozen=True)
class TaskVerdict:
    """The conclusion for one task (or task group), read off its primary metric.

    Attributes:
        name: The task (or group) name.
        kind: "task" or "group".
        metric: The primary metric (the first row of that name).
        verdict: The adjusted interval verdict, or "not trustworthy" when the chosen
            single-task side is below the linear reference beyond the interval.
        reason: One sentence with the numbers behind the verdict.
        row: The primary metric's row.
    """

    name: str
    kind: str
    metric: str
    verdict: TaskVerdictWord
    reason: str
    row: RowResult


def task_verdicts(comparison: Comparison) -> dict[str, TaskVerdict]:
    """One verdict per task and per group, in row order.

    Args:
        comparison: The measured comparison (`stats.compare`).

    Returns:
        Name -> verdict, read off the first (primary) row of each name.
    """
    out: dict[str, TaskVerdict] = {}
    for row in comparison.rows:
        if row.name not in out:
            out[row.name] = _verdict_of(row, comparison)
    return out


def overall_verdict(
    comparison: Comparison, verdicts: dict[str, TaskVerdict]
) -> tuple[TaskVerdictWord, str]:
    """The overall verdict and one paragraph saying why.

    Args:
        comparison: The measured comparison; its Δm verdict is the overall one unless some
            task is not trustworthy.
        verdicts: `task_verdicts(comparison)`.

    Returns:
        The verdict word and one paragraph: Δm with its interval and what it means.
    """
    dm = delta_m_text(comparison)
    broken = [_label(v) for v in verdicts.values() if v.verdict == NOT_TRUSTWORTHY]
    if broken:
        names = ", ".join(broken)
        networks = "network" if len(broken) == 1 else "networks"
        is_are = "is" if len(broken) == 1 else "are"
        return NOT_TRUSTWORTHY, (
            f"{dm} but the single-task {networks} of {names} {is_are} weaker than a linear "
            "model, so multi-task learning cannot be credited there and the overall verdict "
            f"is not trustworthy (Δm alone reads '{comparison.verdict}')."
        )
    meaning = {
        "improves": "one multi-task model beats one model per task, on average over tasks.",
        "hurts": "one multi-task model does worse than one model per task, on average over tasks.",
        "no clear difference": "the interval includes zero: no clear difference between one "
        "multi-task model and one model per task.",
    }[comparison.verdict]
    if not math.isfinite(comparison.delta_m):
        meaning = "no clear difference can be claimed."
    return comparison.verdict, f"{dm}: {meaning}"


def delta_m_text(comparison: Comparison) -> str:
    """Δm with its interval, e.g. "Δm = +3.98% (95% CI [+1.20%, +6.10%])".

    Args:
        comparison: The measured comparison (Δm in percent).

    Returns:
        The phrase; it says why when Δm or its interval is missing.
    """
    c = comparison
    if not math.isfinite(c.delta_m) and not c.dm_metrics:
        return "Δm could not be computed (no task metric has a usable single-task value)"
    if not math.isfinite(c.delta_m):
        return (
            "Δm could not be computed (a chosen metric's single-task test value is below "
            f"{c.min_baseline:g} in magnitude, or Δm is undefined on the full test split)"
        )
    if math.isfinite(c.delta_m_low) and math.isfinite(c.delta_m_high):
        ci = f"{_pct(c.confidence)} CI [{c.delta_m_low:+.2f}%, {c.delta_m_high:+.2f}%]"
    else:
        ci = _no_ci(_pct(c.confidence), c.dm_nonfinite, c.bootstrap_samples)
    return f"Δm = {c.delta_m:+.2f}% ({ci})"


def fmt(x: float, signed: bool = False) -> str:
    """A score for prose: 3 decimals, more significant digits for tiny values, "n/a" for NaN.

    Args:
        x: The value.
        signed: Always show the sign (for deltas).

    Returns:
        The formatted value.
    """
    if not math.isfinite(x):
        return "n/a"
    sign = "+" if signed else ""
    spec = ".3f" if x == 0 or abs(x) >= 0.01 else ".2g"
    return f"{x:{sign}{spec}}"


def _verdict_of(row: RowResult, c: Comparison) -> TaskVerdict:
    pct = _pct(c.confidence)
    measured = _measured(row, c)
    if row.chosen_below_floor:
        reason = (
            f"{_chosen_floor(row, pct)}: this verdict is not trustworthy; as measured, "
            f"{measured} would read '{row.verdict}'"
        )
        word: TaskVerdictWord = NOT_TRUSTWORTHY
    else:
        reason, word = measured, row.verdict
    if row.below_floor and not _chosen_is_network(row):
        reason += (
            f"; diagnostic: the single-task network ({fmt(row.network_mean)}) is weaker than "
            f"a linear model ({fmt(row.reference)}; network - linear {pct} CI "
            f"[{fmt(row.floor_low, True)}, {fmt(row.floor_high, True)}]), but the chosen "
            f"single-task side is the {row.single_kind} model"
        )
    if row.multi_below_floor:
        also = " also" if row.chosen_below_floor else ""
        reason += (
            f"; the multi-task network ({fmt(row.multi_mean)}) is{also} weaker than a linear "
            f"model ({fmt(row.reference)})"
        )
    return TaskVerdict(row.name, row.kind, row.metric, word, reason, row)


def _chosen_is_network(row: RowResult) -> bool:
    return row.single_kind == "network"


def _chosen_floor(row: RowResult, pct: str) -> str:
    if _chosen_is_network(row):
        return (
            f"the single-task network ({fmt(row.single_mean)}) is weaker than a linear model "
            f"({fmt(row.reference)}; single - linear {pct} CI "
            f"[{fmt(row.floor_low, True)}, {fmt(row.floor_high, True)}])"
        )
    return (
        f"the chosen single-task side ({row.single_kind}, {fmt(row.single_mean)}) is weaker "
        f"than a linear model ({fmt(row.reference)})"
    )


def _measured(row: RowResult, c: Comparison) -> str:
    pct, samples = _pct(c.confidence), c.bootstrap_samples
    if math.isfinite(row.ci_low) and math.isfinite(row.ci_high):
        ci = f"raw {pct} CI [{fmt(row.ci_low, True)}, {fmt(row.ci_high, True)}]"
        if row.in_family and math.isfinite(row.adj_low) and math.isfinite(row.adj_high):
            ci += (
                f", family-wise {pct} CI [{fmt(row.adj_low, True)}, "
                f"{fmt(row.adj_high, True)}] over {len(c.family)} verdicts"
            )
    else:
        ci = _no_ci(pct, row.nonfinite, samples)
    lower = "" if row.higher_is_better else "; lower is better"
    side = "single-task" if row.single_kind == "network" else f"single-task {row.single_kind}"
    text = (
        f"multi-task {fmt(row.multi_mean)} vs {side} {fmt(row.single_mean)} "
        f"(delta {fmt(row.delta, True)}, {ci}{lower})"
    )
    if row.raw_verdict != row.verdict:
        text += f"; the raw interval alone would read '{row.raw_verdict}'"
    return text


def _no_ci(pct: str, nonfinite: int, samples: int) -> str:
    return f"no {pct} CI: {nonfinite} of {samples} replicates had no finite value"


def _pct(confidence: float) -> str:
    return f"{round(confidence * 100):d}%"


def _label(v: TaskVerdict) -> str:
    return v.name if v.kind == "task" else f"{v.name} (group)"
