"""What the report is made of: its inputs, its prose, and the numbers it exports
(`reports/metrics.json`). Its tables are in `tables`."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from multitune.report.crossfit import MethodComparison
from multitune.report.grouping import GroupingView
from multitune.report.grouping import answer as grouping_answer
from multitune.report.grouping import metrics as grouping_metrics
from multitune.report.method import method_json
from multitune.report.stats import MAX_NONFINITE, Comparison, RowResult
from multitune.report.verdicts import (
    TaskVerdict,
    delta_m_text,
    overall_verdict,
    task_verdicts,
)

_ORDER = ("improves", "hurts", "no clear difference", "not trustworthy")


@dataclass(frozen=True)
class RunRecord:
    """One training run of the final stage, traceable to its MLflow run.

    Attributes:
        run_id: The MLflow run id.
        kind: "multi", "single", "transfer" or "reference".
        tasks: The tasks it trained on.
        seed: Its seed (None for the deterministic reference).
        epochs_run: Epochs trained.
        steps: Optimizer steps trained.
        best_step: The step of the best validation score (the weights kept).
        converged: False when it hit its cap while validation was still improving; None when
            not recorded (the reference).
    """

    run_id: str
    kind: str
    tasks: tuple[str, ...]
    seed: int | None
    epochs_run: int | None = None
    steps: int | None = None
    best_step: int | None = None
    converged: bool | None = None


@dataclass
class ReportInputs:
    """Everything the report shows. Every number is measured by the final stage's runs.

    Attributes:
        comparison: Per task/metric and Δm, with intervals (`stats.compare`).
        reference: The linear reference's test scores `{task: {metric: value}}`.
        runs: The runs behind the numbers.
        curves: Long table of validation curves: task, metric, kind, seed, epoch, value.
        trials: The sweep's trials table, or None.
        objective: The trials' objective column.
        top_trials: The best trials as shown (`multitune.report.sweep_table`: string cells).
        top_trials_note: What the top-trials table shows and leaves out, printed above it.
        importance: Hyperparameter importance, most important first.
        importance_evaluator: Which Optuna evaluator produced it.
        pareto_points: Per-trial val score of each task (columns = tasks), or None.
        transfer: Source task rows x target task columns: change in the target's val score
            when trained with the source rather than alone; None when not measured.
        transfer_method: How transfer was measured.
        meta: Provenance: git commit, params hash, experiment, registered version, alias...
        budgets: The search effort of each side, label -> value (sweep trials, baseline
            trials per task, epoch cap, steps per epoch, patience, early stopping...).
        reference_chosen: Per task, the linear reference's setting chosen on validation
            (e.g. `{"model": "logistic", "c": 0.1}`).
        grouping: Which tasks to train together (`multitune.report.grouping`); None when
            not measured.
        scored_words: Per token task, the words its test metrics score (every word of the
            labelled test rows).
        method: The cross-fitted comparison, the verdict about the method
            (`multitune.report.crossfit`); None when cross-fitting is off.
        method_train_rows: Mean rows each cross-fit training saw (the estimand's size).
        winner_val_delta_m: The sweep winner's validation Δm (percent), shown beside its
            cross-fitted Δm so that the winner's curse is visible.
    """

    comparison: Comparison
    reference: dict[str, dict[str, float]]
    runs: list[RunRecord]
    curves: pd.DataFrame
    trials: pd.DataFrame | None = None
    objective: str = "objective"
    top_trials: pd.DataFrame | None = None
    top_trials_note: str = ""
    importance: dict[str, float] = field(default_factory=dict)
    importance_evaluator: str = "fanova"
    pareto_points: pd.DataFrame | None = None
    transfer: pd.DataFrame | None = None
    transfer_method: str = "none"
    meta: dict[str, Any] = field(default_factory=dict)
    budgets: dict[str, Any] = field(default_factory=dict)
    reference_chosen: dict[str, dict[str, Any]] = field(default_factory=dict)
    grouping: GroupingView | None = None
    scored_words: dict[str, int] = field(default_factory=dict)
    method: MethodComparison | None = None
    method_train_rows: float = 0.0
    winner_val_delta_m: float | None = None


def not_converged(runs: list[RunRecord]) -> list[RunRecord]:
    """The runs that hit their cap while validation was still improving."""
    return [r for r in runs if r.converged is False]


def opening_paragraph(inputs: ReportInputs, verdicts: dict[str, TaskVerdict]) -> str:
    """The answer in one paragraph: overall verdict, Δm, per-task tally, convergence warning.

    Args:
        inputs: The report's inputs.
        verdicts: `task_verdicts(inputs.comparison)`.

    Returns:
        One markdown paragraph (bold for the verdict).
    """
    word, why = overall_verdict(inputs.comparison, verdicts)
    parts = [f"**Overall: {word}.** {why}", _tally(verdicts)]
    if inputs.grouping is not None:
        parts.append(grouping_answer(inputs.grouping))
    warning = _convergence_warning(inputs.runs)
    if warning:
        parts.append(warning)
    return " ".join(parts)


def verdict_lines(verdicts: dict[str, TaskVerdict]) -> str:
    """One markdown list line per task and group: name, primary metric, verdict, reason."""
    lines = []
    for v in verdicts.values():
        label = v.metric if v.kind == "task" else f"group, {v.metric}"
        lines.append(f"- **{v.name}** ({label}): {v.verdict} — {v.reason}")
    return "\n".join(lines)


def _tally(verdicts: dict[str, TaskVerdict]) -> str:
    tasks = [v.verdict for v in verdicts.values() if v.kind == "task"]
    groups = [v.verdict for v in verdicts.values() if v.kind == "group"]
    text = f"Of {len(tasks)} task{'s' if len(tasks) != 1 else ''}: {_counts(tasks)}."
    if groups:
        text += f" Of {len(groups)} task group{'s' if len(groups) != 1 else ''}: "
        text += f"{_counts(groups)}."
    return text


def _counts(words: Sequence[str]) -> str:
    counts = Counter(words)
    return ", ".join(f"{counts[w]} {w}" for w in _ORDER if counts[w]) or "none"


def _convergence_warning(runs: list[RunRecord]) -> str:
    stuck = not_converged(runs)
    if not stuck:
        return ""
    trained = [r for r in runs if r.kind != "reference"]
    names = ", ".join(_run_label(r) for r in stuck)
    one = len(stuck) == 1
    return (
        f"⚠ {len(stuck)} of {len(trained)} final runs did not converge: "
        f"{'it' if one else 'they'} hit {'its' if one else 'their'} cap while validation was "
        f"still improving ({names}), so {'its' if one else 'their'} scores may understate what "
        "longer training reaches (see Runs)."
    )


def _run_label(r: RunRecord) -> str:
    seed = "" if r.seed is None else f" seed {r.seed}"
    tasks = "" if r.kind == "multi" else f" {'+'.join(r.tasks)}"
    return f"{r.kind}{tasks}{seed}"


def delta_m_statement(c: Comparison) -> str:
    """Which (task, metric) pairs enter Δm, which are left out and why, and non-finite counts.

    Args:
        c: The measured comparison.

    Returns:
        Markdown paragraphs separated by blank lines.
    """
    used = ", ".join(f"`{t}/{m}`" for t, m in c.dm_metrics) or "none"
    first = (
        f"{delta_m_text(c)}. Δm is the mean over tasks of the mean over each task's metrics "
        "of the relative change of multi-task against single-task, sign-corrected so that "
        f"positive means multi-task is better. It uses: {used}."
    )
    if c.dm_excluded:
        left = "; ".join(f"`{t}/{m}` ({why})" for t, m, why in c.dm_excluded)
        first += f" Left out: {left}."
    where = (
        "single-task validation value"
        if c.dm_chosen_on == "validation"
        else "single-task value on the full test split"
    )
    policy = (
        f"The metrics in Δm were fixed on {c.dm_chosen_on}: a metric whose {where} is below "
        f"{c.min_baseline:g} in magnitude is left out (a relative change against a value near "
        "zero is unstable or undefined), and a replicate in which a chosen metric's "
        "single-task value falls below it has no Δm. Δm's verdict is one test, not adjusted "
        "for the per-task verdicts."
    )
    return "\n\n".join([first, policy, _nonfinite_text(c)])


def _nonfinite_text(c: Comparison) -> str:
    n = c.bootstrap_samples
    counts = [("Δm", c.dm_nonfinite)] if c.dm_nonfinite else []
    for r in c.rows:
        if r.nonfinite:
            counts.append((f"{r.name}/{r.metric}", r.nonfinite))
        if r.floor_nonfinite:
            counts.append((f"{r.name}/{r.metric} network - linear", r.floor_nonfinite))
    if not counts:
        return f"Every one of the {n} replicates had a finite value for every interval."
    listed = "; ".join(f"{label}: {k} of {n}" for label, k in counts)
    return (
        f"Replicates with no finite value (e.g. a metric undefined on the drawn rows): {listed}."
        f" Intervals use the finite ones; above {MAX_NONFINITE:.0%} of {n} the interval is not "
        "reported."
    )


def method_text(inputs: ReportInputs) -> str:
    """How the numbers were made: split, seeds, bootstrap (clusters), family-wise adjustment,
    verdict rule, linear reference."""
    c = inputs.comparison
    n_multi = len(c.rows[0].multi_values) if c.rows else 0
    n_single = len(c.rows[0].single_values) if c.rows else 0
    if c.resample_unit == "groups":
        unit = (
            " The clusters are the split's groups (the rows of one group, duplicate sets), so "
            "rows that are not independent do not count as independent evidence."
        )
    elif c.groups_fallback:
        unit = ""  # the method line says why the groups were not resampled
    else:
        unit = " No groups were given: every test row counts as independent."
    if any(r.single_kind != "network" for r in c.rows):
        side = (
            "The single-task side of each task is the model chosen among the baseline "
            "candidates, the tuned linear model included (its kind is in the table): on "
            "validation, or for a task with few labelled validation rows by cross-validation "
            "over train+val (the budget table says which tasks and what it cost)."
        )
    else:
        side = "The single-task side of each task is its single-task network."
    family = ", ".join(c.family) or "none"
    return " ".join(
        [
            f"Test split: {c.n_test} rows, never seen by the sweep, the baselines or the "
            f"linear reference's selection. {n_multi} multi-task seeds; {n_single} "
            "single-task seeds per task. Mean ± std over seeds; delta = multi - single.",
            f"{pct(c)} intervals: {c.method}; {c.bootstrap_samples} replicates.{unit}",
            f"Verdicts hold a family-wise error rate: {c.adjustment}. The family: {family}. "
            "The table shows each row's raw interval beside the family-wise one; a verdict "
            "(improves / hurts when the interval excludes zero, otherwise no clear "
            "difference) is read off the family-wise one. Other metrics keep their raw "
            "interval and verdict.",
            f"{side} `linear` is the tuned linear reference (logistic regression; ridge for "
            "regression tasks) on the same features and split, its regularization and class "
            "weighting chosen on validation; where the chosen single-task side trails it by "
            f"more than {c.floor_tolerance:g} beyond the interval, the task's verdict is not "
            "trustworthy; a single-task network that trails it while another model is the "
            "chosen side is reported as a diagnostic.",
        ]
    )


def pct(c: Comparison) -> str:
    """The intervals' level as a percentage, e.g. \"95%\"."""
    return f"{round(c.confidence * 100):d}%"


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def linear_score(r: RowResult, inputs: ReportInputs) -> float | None:
    """The reference's test score: the stage's table first, else the comparison's."""
    ref = inputs.reference.get(r.name, {}).get(r.metric)
    if ref is None and math.isfinite(r.reference):
        ref = r.reference
    return ref


def _row_json(r: RowResult, linear: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "multi": _num(r.multi_mean),
        "multi_std": _num(r.multi_std),
        "single": _num(r.single_mean),
        "single_std": _num(r.single_std),
        "single_kind": r.single_kind,
        "single_network": _num(r.network_mean),
        "delta": _num(r.delta),
        "ci_low": _num(r.ci_low),
        "ci_high": _num(r.ci_high),
        "adjusted_ci": [_num(r.adj_low), _num(r.adj_high)],
        "verdict": r.verdict,
        "raw_verdict": r.raw_verdict,
        "in_family": r.in_family,
        "nonfinite": r.nonfinite,
    }
    if linear is not None:
        out |= {
            "logreg": _num(linear),
            "floor_low": _num(r.floor_low),
            "floor_high": _num(r.floor_high),
            "below_floor": r.below_floor,
            "chosen_below_floor": r.chosen_below_floor,
            "multi_below_floor": r.multi_below_floor,
        }
    return out


def metrics_json(inputs: ReportInputs) -> dict[str, Any]:
    """The report's numbers, nested for `dvc metrics show` / `dvc metrics diff`.

    `tasks.<task>.<metric>` (and `groups.<group>.<metric>`) hold the row's numbers (the
    chosen single-task side as `single`, the single-task network as `single_network`), its
    raw interval (`ci_low`, `ci_high`) and family-wise one (`adjusted_ci`), its verdict
    (adjusted for the family; `raw_verdict` off the raw interval) and the linear reference's
    floor; `task_verdicts.<task>` (and `group_verdicts.<group>`) the task's verdict;
    `verdict` is Δm's and `overall` the overall verdict (which can be "not trustworthy");
    `scored_words.<task>` the words a token task's test metrics score.
    """
    c = inputs.comparison
    verdicts = task_verdicts(c)
    tables: dict[str, dict[str, dict[str, Any]]] = {"task": {}, "group": {}}
    for r in c.rows:
        tables[r.kind].setdefault(r.name, {})[r.metric] = _row_json(r, linear_score(r, inputs))
    out: dict[str, Any] = {
        "delta_m": _num(c.delta_m),
        "delta_m_ci_low": _num(c.delta_m_low),
        "delta_m_ci_high": _num(c.delta_m_high),
        "delta_m_nonfinite": c.dm_nonfinite,
        "verdict": c.verdict,
        "overall": overall_verdict(c, verdicts)[0],
        "confidence": c.confidence,
        "bootstrap_samples": c.bootstrap_samples,
        "n_test": c.n_test,
        "n_groups": c.n_groups,
        "resample_unit": c.resample_unit,
        "family": list(c.family),
        "adjustment": c.adjustment,
        "dm_chosen_on": c.dm_chosen_on,
        "tasks": tables["task"],
        "task_verdicts": {v.name: v.verdict for v in verdicts.values() if v.kind == "task"},
    }
    if tables["group"]:
        out["groups"] = tables["group"]
        out["group_verdicts"] = {v.name: v.verdict for v in verdicts.values() if v.kind == "group"}
    if inputs.grouping is not None:
        out |= grouping_metrics(inputs.grouping)
    if inputs.scored_words:
        out["scored_words"] = dict(inputs.scored_words)
    if inputs.method is not None:
        out["method"] = method_json(inputs.method)
        out["overall"] = inputs.method.verdict
        out["test_split_overall"] = overall_verdict(c, verdicts)[0]
    out["runs"] = _runs_json(inputs.runs)
    out["not_converged"] = [r.run_id for r in not_converged(inputs.runs)]
    return out


def _runs_json(runs: list[RunRecord]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "multi": {str(r.seed): r.run_id for r in runs if r.kind == "multi"},
        "single": {f"{r.tasks[0]}/{r.seed}": r.run_id for r in runs if r.kind == "single"},
    }
    reference = [r.run_id for r in runs if r.kind == "reference"]
    if reference:
        out["reference"] = reference[0]
    return out
