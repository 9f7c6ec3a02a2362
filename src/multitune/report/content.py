"""What the report is made of, and the numbers it exports (`reports/metrics.json`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from multitune.report.stats import Comparison, RowResult


@dataclass(frozen=True)
class RunRecord:
    """One training run of the final stage, traceable to its MLflow run."""

    run_id: str
    kind: str  # "multi" | "single" | "transfer" | "reference"
    tasks: tuple[str, ...]
    seed: int | None
    epochs_run: int | None = None


@dataclass
class ReportInputs:
    """Everything the report shows. Every number is measured by the final stage's runs.

    Attributes:
        comparison: Per task/metric and Δm, with intervals (`stats.compare`).
        reference: Logistic-regression test scores `{task: {metric: value}}`.
        runs: The runs behind the numbers.
        curves: Long table of validation curves: task, metric, kind, seed, epoch, value.
        trials: The sweep's trials table, or None.
        objective: The trials' objective column.
        top_trials: The best trials (already cut to size).
        importance: Hyperparameter importance, most important first.
        importance_evaluator: Which Optuna evaluator produced it.
        pareto_points: Per-trial val score of each task (columns = tasks), or None.
        transfer: Source task rows x target task columns: change in the target's val score
            when trained with the source rather than alone; None when not measured.
        transfer_method: How transfer was measured.
        meta: Provenance: git commit, params hash, experiment, registered version, alias...
    """

    comparison: Comparison
    reference: dict[str, dict[str, float]]
    runs: list[RunRecord]
    curves: pd.DataFrame
    trials: pd.DataFrame | None = None
    objective: str = "objective"
    top_trials: pd.DataFrame | None = None
    importance: dict[str, float] = field(default_factory=dict)
    importance_evaluator: str = "fanova"
    pareto_points: pd.DataFrame | None = None
    transfer: pd.DataFrame | None = None
    transfer_method: str = "none"
    meta: dict[str, Any] = field(default_factory=dict)


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _row_json(r: RowResult) -> dict[str, Any]:
    return {
        "multi": _num(r.multi_mean),
        "multi_std": _num(r.multi_std),
        "single": _num(r.single_mean),
        "single_std": _num(r.single_std),
        "delta": _num(r.delta),
        "ci_low": _num(r.ci_low),
        "ci_high": _num(r.ci_high),
        "verdict": r.verdict,
    }


def metrics_json(inputs: ReportInputs) -> dict[str, Any]:
    """The report's numbers, nested for `dvc metrics show` / `dvc metrics diff`."""
    c = inputs.comparison
    tasks: dict[str, dict[str, Any]] = {}
    groups: dict[str, dict[str, Any]] = {}
    for r in c.rows:
        target = tasks if r.kind == "task" else groups
        entry = target.setdefault(r.name, {})
        entry[r.metric] = _row_json(r)
        ref = inputs.reference.get(r.name, {}).get(r.metric)
        if ref is not None:
            entry[r.metric]["logreg"] = _num(ref)
    out: dict[str, Any] = {
        "delta_m": _num(c.delta_m),
        "delta_m_ci_low": _num(c.delta_m_low),
        "delta_m_ci_high": _num(c.delta_m_high),
        "verdict": c.verdict,
        "confidence": c.confidence,
        "bootstrap_samples": c.bootstrap_samples,
        "n_test": c.n_test,
        "tasks": tasks,
    }
    if groups:
        out["groups"] = groups
    out["runs"] = {
        "multi": {str(r.seed): r.run_id for r in inputs.runs if r.kind == "multi"},
        "single": {f"{r.tasks[0]}/{r.seed}": r.run_id for r in inputs.runs if r.kind == "single"},
    }
    reference = [r.run_id for r in inputs.runs if r.kind == "reference"]
    if reference:
        out["runs"]["reference"] = reference[0]
    return out


def comparison_frame(inputs: ReportInputs) -> pd.DataFrame:
    """The comparison table as a DataFrame of formatted strings, one row per task metric."""
    c = inputs.comparison
    pct = f"{round(c.confidence * 100):d}%"
    records = []
    for r in c.rows:
        ref = inputs.reference.get(r.name, {}).get(r.metric)
        arrow = "↑" if r.higher_is_better else "↓"
        records.append(
            {
                "task": r.name if r.kind == "task" else f"{r.name} (group)",
                "metric": f"{r.metric} {arrow}",
                "single-task": f"{r.single_mean:.4f} ± {r.single_std:.4f}",
                "multi-task": f"{r.multi_mean:.4f} ± {r.multi_std:.4f}",
                "delta": f"{r.delta:+.4f}",
                f"{pct} CI": f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}]",
                "verdict": r.verdict,
                "logreg": "" if ref is None or not math.isfinite(ref) else f"{ref:.4f}",
            }
        )
    return pd.DataFrame.from_records(records)
