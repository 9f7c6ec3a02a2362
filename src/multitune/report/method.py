"""What the report says of the cross-fitted comparison (`multitune.report.crossfit`): the
opening answer about the method, a table per task, and its numbers for metrics.json."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from multitune.report.crossfit import MethodComparison, MethodRow

MEANING = {
    "improves": "training the tasks together does better",
    "hurts": "training the tasks together does worse",
    "equivalent": "the two procedures are equivalent within the margin",
    "inconclusive": "the evidence decides neither a difference nor equivalence",
}


def _pct(level: float) -> str:
    return f"{level:.1%}".replace(".0%", "%")


def _num(x: float, signed: bool = False, digits: int = 3) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def estimand(m: MethodComparison, train_rows: float) -> str:
    """The estimand in one sentence."""
    return (
        f"The question: trained on tables of this size (about {train_rows:,.0f} rows per "
        f"training, as in each of the {m.folds} folds), with the configs these searches chose, "
        "does one multi-task model do better than one model per task? The answer is the "
        "procedures' expected difference over training sets and training randomness, "
        f"estimated by cross-fitting ({m.repeats} x {m.folds}-fold: every labelled row scored "
        f"{m.repeats} time(s) by models that never saw it)."
    )


def opening(m: MethodComparison, train_rows: float) -> str:
    """The report's first paragraph: the overall verdict about the method and Δm."""
    dm = m.delta_m
    word = dm.verdict
    why = (
        f"Cross-fitted Δm {_num(dm.delta, True, 2)}% ({_pct(m.confidence)} corrected interval "
        f"[{_num(dm.low, True, 2)}%, {_num(dm.high, True, 2)}%], margin ±{dm.margin:.2g}%): "
        f"{MEANING[word]}."
    )
    if word == "inconclusive" and dm.rows_needed:
        why += f" About {dm.rows_needed:,} labelled rows would decide it at this variance."
    tally: dict[str, list[str]] = {}
    for r in m.rows:
        tally.setdefault(r.verdict, []).append(r.name)
    per_task = "; ".join(f"{w}: {', '.join(ns)}" for w, ns in tally.items())
    return f"**About the method: {word}.** {why} Per task: {per_task}. " + estimand(m, train_rows)


def frame(m: MethodComparison) -> pd.DataFrame:
    """One line per task and Δm: rows scored, both sides, the difference, its corrected
    interval (family-wise for tasks), the margin, the verdict and rows needed."""
    pct = _pct(m.family_level)
    rows = []
    for r in [*m.rows, m.delta_m]:
        is_dm = r.name == "Δm"
        unit = "%" if is_dm else ""
        rows.append(
            {
                "task": r.name,
                "metric": r.metric,
                "rows scored": f"{r.rows:,}",
                "multi": "" if is_dm else _num(r.multi_mean),
                "single": "" if is_dm else _num(r.single_mean),
                "delta": f"{_num(r.delta, True)}{unit}",
                "interval": f"[{_num(r.low, True)}, {_num(r.high, True)}]{unit} "
                f"({_pct(m.confidence) if is_dm else pct})",
                "margin": f"±{r.margin:.3g}{unit}",
                "verdict": r.verdict,
                "rows needed": f"{r.rows_needed:,}" if r.rows_needed else "",
            }
        )
    return pd.DataFrame(rows)


def method_text(m: MethodComparison) -> str:
    """How the cross-fitted verdict was reached, one plain sentence each."""
    return "\n\n".join(
        [
            f"Folds: {m.repeats} repeat(s) of {m.folds} folds over the whole table, dealt by "
            "whole units (groups, duplicate sets) and stratified over every task; the same "
            "folds for both sides and every grouping candidate. In each fold both sides train "
            "on the other folds, stop early on an inner validation carved from them, and "
            "predict the held-out fold with a fresh seed.",
            "Chosen inside each fold: early stopping and the linear model's regularization. "
            "Chosen once, outside the folds, on the development split: the configs (the "
            "searches' winners, the small tasks' cross-validated finalists) and each task's "
            "single-task side. The configs are a menu picked on the same rows, which favours "
            "neither side by design; `benchmarks/calibration.py` measures what it costs.",
            f"Interval: {m.method}. Task intervals are Bonferroni-adjusted over "
            f"{len(m.rows)} task(s) ({_pct(m.family_level)} each), so the chance of any false "
            f"'improves' or 'hurts' is at most {_pct(1 - m.confidence)}; Δm is one test.",
            f"Verdicts: improves / hurts when the interval excludes zero; equivalent when the "
            f"{_pct(2 * m.confidence - 1)} interval lies inside ±margin (two one-sided tests); "
            "otherwise inconclusive, with the labelled rows that would decide at the observed "
            "variance (the interval shrinks as one over the square root of the rows).",
            "The test-split figures below describe the models trained once on the split and "
            "shipped: they are not evidence about the method, and nothing is decided on them.",
            *m.notes,
        ]
    )


def _row_json(r: MethodRow) -> dict[str, Any]:
    def num(x: float) -> float | None:
        return x if math.isfinite(x) else None

    return {
        "metric": r.metric,
        "rows": r.rows,
        "multi": num(r.multi_mean),
        "single": num(r.single_mean),
        "delta": num(r.delta),
        "ci_low": num(r.low),
        "ci_high": num(r.high),
        "equivalence_low": num(r.eq_low),
        "equivalence_high": num(r.eq_high),
        "margin": num(r.margin),
        "folds": r.folds,
        "verdict": r.verdict,
        "rows_needed": r.rows_needed,
    }


def method_json(m: MethodComparison) -> dict[str, Any]:
    """The cross-fitted comparison for metrics.json (`method.*`)."""
    return {
        "verdict": m.verdict,
        "delta_m": _row_json(m.delta_m),
        "tasks": {r.name: _row_json(r) for r in m.rows},
        "folds": m.folds,
        "repeats": m.repeats,
        "confidence": m.confidence,
        "family_level": m.family_level,
        "method": m.method,
    }
