"""The report's view of the sweep's trials table (the columns the sweep stage writes)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from multitune.config.final import FinalConfig
from multitune.final.sweep_view import param_columns, sweep_view


def _trials(n: int = 24) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    lr = 10 ** rng.uniform(-4, -2, n)
    a = 0.9 - (np.log10(lr) + 3) ** 2 * 0.1 + rng.normal(0, 0.005, n)
    b = 0.5 + rng.uniform(0, 0.1, n)
    return pd.DataFrame(
        {
            "trial_id": [f"t{i}" for i in range(n)],
            "status": ["completed"] * (n - 1) + ["failed"],
            "config": ["{}"] * n,
            "config/lr": lr,
            "config/fusion": rng.choice(["concat", "gated"], n),
            "val/a/auroc": a,
            "val/b/r2": b,
            "val/b/rmse": 1 - b,
            "delta_m": a - 0.8,
            "objective": np.r_[a[:-1] - 0.8, np.nan],
        }
    )


def test_sweep_view_reads_the_sweep_stage_columns():
    trials = _trials()
    view = sweep_view(trials, ["a", "b"], {"a": "binary", "b": "regression"}, FinalConfig())
    assert param_columns(trials) == ["config/lr", "config/fusion"]
    assert view.top is not None and len(view.top) == 10
    assert view.top["objective"].iloc[0] == trials["objective"].max()
    assert next(iter(view.importance)) == "config/lr"
    assert view.pareto is not None and list(view.pareto.columns) == ["a", "b"]
    assert view.pareto["b"].tolist() == trials["val/b/r2"].tolist()  # the primary metric


def test_no_trials_no_sweep_sections():
    view = sweep_view(None, ["a"], {"a": "binary"}, FinalConfig())
    assert view.top is None and view.importance == {} and view.pareto is None
