"""The sweep's trials as the report shows them: top trials, importance, per-task val scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from multitune.config.final import FinalConfig
from multitune.config.space import METHOD_TARGETS, VALUE_TARGETS
from multitune.report import importance, study_from_trials
from multitune.report.sweep_table import sweep_table
from multitune.training.metrics import higher_is_better, primary_metric

PARAM_PREFIXES = ("config/", "config.", "params.", "param.")
OBJECTIVE_COLUMNS = ("objective", "delta_m", "score")


@dataclass
class SweepView:
    """What the report needs from the sweep (all None/empty without a trials table)."""

    trials: pd.DataFrame | None = None
    objective: str = "objective"
    top: pd.DataFrame | None = None
    top_note: str = ""
    importance: dict[str, float] = field(default_factory=dict)
    pareto: pd.DataFrame | None = None


def param_columns(trials: pd.DataFrame) -> list[str]:
    """The sampled hyperparameter columns of a trials table."""
    return [c for c in trials.columns if str(c).startswith(PARAM_PREFIXES)]


def _param_name(column: str) -> str:
    """`config/weighting.dwa.temperature` -> `weighting.dwa.temperature`."""
    return next(column.removeprefix(p) for p in PARAM_PREFIXES if column.startswith(p))


def task_score_column(trials: pd.DataFrame, task: str, metric: str) -> str | None:
    """The column holding a task's validation `metric`, e.g. `val/<task>/<metric>`."""
    for c in trials.columns:
        parts = str(c).replace(".", "/").split("/")
        if task in parts and parts[-1] == metric:
            return str(c)
    return None


def sweep_view(
    trials: pd.DataFrame | None,
    tasks: Sequence[str],
    types: Mapping[str, str],
    cfg: FinalConfig,
) -> SweepView:
    """Top trials (`multitune.report.sweep_table`: the knobs that differ between them, at
    most 10 columns), hyperparameter importance and the per-task val scores for the Pareto
    plot."""
    if trials is None or trials.empty:
        return SweepView()
    objective = next((c for c in OBJECTIVE_COLUMNS if c in trials.columns), None)
    if objective is None:
        return SweepView(trials=trials)
    params = param_columns(trials)
    study = study_from_trials(trials, params, objective)
    scores: dict[str, pd.Series] = {}
    for task in tasks:
        metric = primary_metric(types[task])
        col = task_score_column(trials, task, metric)
        if col is not None:
            sign = 1.0 if higher_is_better(metric) else -1.0
            scores[task] = sign * pd.to_numeric(trials[col], errors="coerce")
    ranked = importance(study, cfg.importance, seed=cfg.seed_base)
    table = sweep_table(
        trials,
        objective,
        {c: _param_name(c) for c in params},
        methods=tuple(METHOD_TARGETS),
        order=(*METHOD_TARGETS, *VALUE_TARGETS),
        n=cfg.top_trials,
        importance=ranked,
    )
    return SweepView(
        trials=trials,
        objective=objective,
        top=table.frame,
        top_note=table.note(),
        importance=ranked,
        pareto=pd.DataFrame(scores) if len(scores) >= 2 else None,
    )
