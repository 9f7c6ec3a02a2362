"""The report's "Which tasks to train together" section and its metrics.json keys.

`GroupingView` is what the final stage measured (`multitune.final.grouping`), reduced to
what the report shows: the affinity matrix, the candidates with their validation and test
Δm against each alone, each task's verified test score per candidate, and the choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from multitune.report.comparison import Comparison
from multitune.report.crossfit import MethodRow


@dataclass(frozen=True)
class CandidateView:
    """One candidate grouping as measured (None comparisons: each alone, the reference)."""

    name: str
    groups: list[list[str]]
    affinity: float
    val: Comparison | None = None
    test: Comparison | None = None
    method: MethodRow | None = None


@dataclass(frozen=True)
class GroupingView:
    """The grouping part of the report.

    Attributes:
        affinity: Row: the task a lookahead step was taken on; column: the task whose loss
            moved (positive: helped).
        candidates: In proposal order, each alone included.
        chosen: The chosen candidate's name.
        why: How it was chosen (one sentence).
        val_confidence: Level of the validation intervals that chose.
        single: Each task's single-task side's test score (primary metric), for the
            candidates table's "each alone" column.
        runs: Training runs the verification added; seconds: their wall time.
    """

    affinity: pd.DataFrame
    candidates: list[CandidateView]
    chosen: str
    why: str
    val_confidence: float
    single: dict[str, tuple[str, float]] = field(default_factory=dict)
    runs: int = 0
    seconds: float = 0.0

    @property
    def chosen_view(self) -> CandidateView:
        return next(c for c in self.candidates if c.name == self.chosen)


def _label(groups: list[list[str]]) -> str:
    return " ".join("{" + ", ".join(g) + "}" for g in groups)


def _dm(c: Comparison | None) -> str:
    if c is None:
        return "0 (reference)"
    if not math.isfinite(c.delta_m_low):
        return f"{c.delta_m:+.2f}%"
    return f"{c.delta_m:+.2f}% [{c.delta_m_low:+.2f}, {c.delta_m_high:+.2f}]"


def _method_dm(c: CandidateView) -> str:
    m = c.method
    if m is None:
        return "0 (reference)" if c.val is None else ""
    if not math.isfinite(m.low):
        return f"{m.delta:+.2f}%"
    return f"{m.delta:+.2f}% [{m.low:+.2f}, {m.high:+.2f}] {m.verdict}"


def candidates_frame(view: GroupingView) -> pd.DataFrame:
    """One row per candidate: groups, affinity score, validation and test Δm vs each alone."""
    return pd.DataFrame(
        [
            {
                "candidate": c.name + (" (chosen)" if c.name == view.chosen else ""),
                "groups": _label(c.groups),
                "affinity score": f"{c.affinity:.4g}",
                **(
                    {"cross-fitted Δm vs each alone": _method_dm(c)}
                    if any(v.method is not None for v in view.candidates)
                    else {}
                ),
                "val Δm vs each alone": _dm(c.val),
                "test Δm vs each alone (exploratory)": _dm(c.test),
                "test verdict (exploratory)": c.test.verdict if c.test is not None else "",
            }
            for c in view.candidates
        ]
    )


def per_task_frame(view: GroupingView) -> pd.DataFrame:
    """Each task's test score (primary metric) under each candidate, with the interval of
    its difference from each alone (family-wise, as the verdicts use)."""
    rows = []
    for task, (metric, single) in view.single.items():
        row: dict[str, Any] = {"task": task, "metric": metric, "each alone": f"{single:.4f}"}
        for c in view.candidates:
            if c.test is None:
                continue
            r = next((r for r in c.test.rows if r.name == task and r.metric == metric), None)
            if r is not None:
                row[c.name] = f"{r.multi_mean:.4f} [{r.adj_low:+.3f}, {r.adj_high:+.3f}]"
        rows.append(row)
    return pd.DataFrame(rows)


def affinity_frame(view: GroupingView) -> pd.DataFrame:
    """The matrix with its row labels as a first column (scientific notation)."""
    frame = view.affinity.map(lambda v: f"{v:.2e}" if math.isfinite(v) else "")
    frame.insert(0, "step on \\ moves", list(view.affinity.index))
    return frame


def answer(view: GroupingView) -> str:
    """The answer-first paragraph's sentence."""
    chosen = view.chosen_view
    return f"**Train together: {_label(chosen.groups)}** ({chosen.name}): {view.why}."


def text(view: GroupingView) -> str:
    """The section's prose."""
    pct = f"{view.val_confidence:.1%}".replace(".0%", "%")
    if any(c.method is not None for c in view.candidates):
        return (
            f"{answer(view)}\n\n"
            "Affinity (TAG's lookahead, Fifty et al. 2021, measured inside the first seed's "
            "multi-task run): row i, column j is 1 - L_j after an SGD step on task i alone / "
            "L_j before; positive: a step on i helps j. The best partitions by affinity are "
            "candidates beside all in one and each alone. Each candidate's multi-task groups "
            "were cross-fitted on the verdict's folds (same folds, seeds, config and stopping "
            "rule as the all-in-one side; a one-task group is that task's single-task side), "
            "so every labelled row judges every candidate out of fold. The grouping is the "
            f"candidate with the highest cross-fitted Δm among those whose {pct} corrected "
            "interval against each alone (Bonferroni over the candidates) lies above zero, "
            "else each alone. The shipped groups were also trained over the final seeds on "
            "the split; their validation and test figures are shown for exploration only "
            f"(not adjusted across candidates; they choose nothing). Verification cost: "
            f"{view.runs} runs on the split, {view.seconds:.0f} s."
        )
    return (
        f"{answer(view)}\n\n"
        "Affinity (TAG's lookahead, Fifty et al. 2021, measured inside the first seed's "
        "multi-task run): row i, column j is 1 - L_j after an SGD step on task i alone / L_j "
        "before, on a fixed sample of labelled train rows; positive: a step on i helps j. "
        "The best partitions by affinity are candidates beside all in one and each alone; "
        "each candidate's multi-task groups were trained over the same seeds with the same "
        "config and stopping rule as the final runs, a one-task group being that task's "
        "single-task side. The grouping is chosen on validation: the candidate with the "
        f"highest validation Δm among those whose {pct} interval against each alone (whole "
        "units and seeds resampled; Bonferroni over the candidates) lies above zero, else "
        "each alone. The test split measures every candidate once and chooses nothing. "
        f"Verification cost: {view.runs} runs, {view.seconds:.0f} s."
    )


def metrics(view: GroupingView) -> dict[str, Any]:
    """`affinity` (task -> task -> value), `grouping` (a list of task lists) and the
    candidates' Δm, for `dvc metrics` and scripts."""

    def num(x: float) -> float | None:
        return x if math.isfinite(x) else None

    return {
        "affinity": {
            a: {b: num(float(view.affinity.loc[a, b])) for b in view.affinity.columns}
            for a in view.affinity.index
        },
        "grouping": view.chosen_view.groups,
        "grouping_candidates": {
            c.name: {
                "groups": c.groups,
                "affinity_score": num(c.affinity),
                "crossfit_delta_m": num(c.method.delta) if c.method else None,
                "crossfit_delta_m_ci": [num(c.method.low), num(c.method.high)]
                if c.method
                else None,
                "val_delta_m": num(c.val.delta_m) if c.val else 0.0,
                "test_delta_m": num(c.test.delta_m) if c.test else 0.0,
                "test_delta_m_ci": [num(c.test.delta_m_low), num(c.test.delta_m_high)]
                if c.test
                else None,
            }
            for c in view.candidates
        },
    }
