"""The sweep's trials as an Optuna study: top trials and hyperparameter importance.

The sweep ran under Ray Tune; its trials table is replayed into an in-memory Optuna study
(`optuna.trial.create_trial` + `Study.add_trial`) so Optuna's importance evaluators
(fANOVA, mean decrease impurity, PED-ANOVA) can be used unchanged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

logger = logging.getLogger(__name__)

Evaluator = Literal["fanova", "mean_decrease_impurity", "ped_anova"]


def _distribution(values: pd.Series) -> BaseDistribution | None:
    present = values.dropna()
    if present.empty:
        return None
    if pd.api.types.is_bool_dtype(present) or not pd.api.types.is_numeric_dtype(present):
        choices = sorted({_plain(v) for v in present}, key=str)
        return CategoricalDistribution(choices) if len(choices) > 1 else None
    lo, hi = float(present.min()), float(present.max())
    if lo == hi:
        return None
    if pd.api.types.is_integer_dtype(present) or all(float(v).is_integer() for v in present):
        return IntDistribution(int(lo), int(hi))
    log = lo > 0 and hi / lo >= 100
    return FloatDistribution(lo, hi, log=log)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def study_from_trials(
    trials: pd.DataFrame,
    param_columns: Sequence[str],
    objective: str,
    direction: Literal["maximize", "minimize"] = "maximize",
) -> optuna.Study:
    """Replay a trials table into an in-memory Optuna study.

    Args:
        trials: One row per trial.
        param_columns: Columns holding the sampled hyperparameters. Constant columns are
            dropped (they cannot matter); a missing value means the trial had no such param.
        objective: The column holding the trial's objective.
        direction: Whether the objective is maximized.

    Returns:
        A study with one COMPLETE trial per row whose objective is finite, in the order of
        their sampled values: the table's row order (Tune's, which varies from run to run) and
        the trials' random ids do not change an importance computed from it.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction)
    dists = {c: d for c in param_columns if (d := _distribution(trials[c])) is not None}
    keys = [repr(tuple(values)) for values in trials[list(param_columns)].itertuples(index=False)]
    order = sorted(range(len(trials)), key=keys.__getitem__)
    for _, row in trials.iloc[order].iterrows():
        value = row[objective]
        if value is None or not math.isfinite(float(value)):
            continue
        params: dict[str, Any] = {}
        used: dict[str, BaseDistribution] = {}
        for name, dist in dists.items():
            v = row[name]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            v = _plain(v)
            if isinstance(dist, IntDistribution):
                v = int(v)
            elif isinstance(dist, FloatDistribution):
                v = float(v)
            params[name] = v
            used[name] = dist
        study.add_trial(optuna.trial.create_trial(params=params, distributions=used, value=value))
    return study


def importance(
    study: optuna.Study, evaluator: Evaluator = "fanova", seed: int = 0
) -> dict[str, float]:
    """Hyperparameter importance from one of Optuna's evaluators (empty if not computable).

    Args:
        study: The replayed study.
        evaluator: Which evaluator.
        seed: The evaluator's seed (fANOVA and MDI fit random forests).

    Returns:
        Param name -> importance, most important first; empty with fewer than two completed
        trials or no varying parameter.
    """
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < 2 or not any(t.params for t in done):
        return {}
    impl: optuna.importance.BaseImportanceEvaluator
    if evaluator == "fanova":
        impl = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    elif evaluator == "mean_decrease_impurity":
        impl = optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=seed)
    else:
        impl = optuna.importance.PedAnovaImportanceEvaluator()
    try:
        result = optuna.importance.get_param_importances(study, evaluator=impl)
    except (ValueError, RuntimeError) as err:  # e.g. too few distinct values
        logger.warning("hyperparameter importance not computed: %s", err)
        return {}
    return {k: float(v) for k, v in result.items()}


def top_trials(
    trials: pd.DataFrame, objective: str, n: int, maximize: bool = True
) -> pd.DataFrame:
    """The `n` best trials by objective (NaN objectives last)."""
    return trials.sort_values(objective, ascending=not maximize, na_position="last").head(n)
