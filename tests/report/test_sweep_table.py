"""The report's sweep table, cell by cell: what a reader of the top trials sees."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from multitune.report.sweep_table import sweep_table

METHODS = ("weighting", "sharing", "sampling", "freezing")


def _frame(configs: list[dict[str, Any]], dm: list[float]) -> pd.DataFrame:
    """Trials as the sweep writes them: the sampled values as JSON and a column each
    (empty where a trial did not sample it; a value sampled as null is empty too)."""
    names = sorted({k for c in configs for k in c})
    rows = []
    for i, (config, value) in enumerate(zip(configs, dm, strict=True)):
        row: dict[str, Any] = {
            "trial_id": f"t{i}",
            "status": "stopped" if i == len(configs) - 1 else "completed",
            "config": json.dumps(config),
            "delta_m": value,
            "objective": value,
        }
        row |= {f"config/{k}": config.get(k, math.nan) for k in names}
        rows.append(row)
    return pd.DataFrame(rows)


def _table(trials: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    params = {c: c.removeprefix("config/") for c in trials if c.startswith("config/")}
    return sweep_table(trials, "objective", params, METHODS, **kwargs).frame


def test_methods_with_their_options_per_task_values_and_numbers_in_one_cell_each():
    trials = _frame(
        [
            {
                "weighting": "static",
                "weighting.static.weights.a": 0.8,
                "weighting.static.weights.b": 1.2999,
                "sampling": "temperature",
                "sampling.temperature.temperature": 2.1,
                "sharing": "mmoe",
                "sharing.mmoe.experts": 4,
                "freezing": "warm_start",
                "freezing.warm_start.unfreeze_after": 3,
                "class_weighting.a": "balanced",
                "class_weighting.b": "none",
                "lr": 0.000123456,
                "trunk": "[256]",
            },
            {
                "weighting": "dwa",
                "weighting.dwa.temperature": 3.8909,
                "sampling": "proportional",
                "sharing": "hard",
                "freezing": "warm_start",
                "freezing.warm_start.unfreeze_after": None,
                "class_weighting.a": "none",
                "class_weighting.b": "none",
                "lr": 0.0021,
                "trunk": "[256]",
            },
        ],
        [0.012, -0.0345],
    )
    top = _table(trials)
    assert top.to_dict("records") == [
        {
            "trial": "t0",
            "Δm (val)": "+1.20%",
            "sharing": "mmoe(experts=4)",
            "weighting": "static(w: a=0.8, b=1.3)",
            "freezing": "warm_start(unfreeze_after=3)",
            "sampling": "temperature(T=2.1)",
            "lr": "1.23e-4",
            "class_weighting": "balanced: a",
        },
        {
            "trial": "t1 (stopped)",
            "Δm (val)": "-3.45%",
            "sharing": "hard",
            "weighting": "dwa(T=3.89)",
            "freezing": "warm_start(unfreeze_after=null)",
            "sampling": "proportional",
            "lr": "2.1e-3",
            "class_weighting": "none",
        },
    ]  # trunk, the same in both, is left out


def test_past_ten_columns_the_least_important_knobs_share_the_last():
    knobs = [f"k{i}" for i in range(12)]
    trials = _frame([{k: i + j for j, k in enumerate(knobs)} for i in range(3)], [0.1, 0.2, 0.3])
    importance = {f"config/{k}": float(j) for j, k in enumerate(knobs)}  # k11 the most
    top = _table(trials, importance=importance, n=2)
    assert list(top.columns) == ["trial", "Δm (val)", *reversed(knobs[-7:]), "other knobs"]
    assert top["trial"].tolist() == ["t2 (stopped)", "t1"]
    assert top["other knobs"].iloc[0] == "k4=6; k3=5; k2=4; k1=3; k0=2"
