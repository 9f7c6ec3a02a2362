"""The search: Ray Tune + OptunaSearch + ASHA. The only package that imports ray.

`run_baselines` tunes one single-task model per task; `run_sweep` tunes the multi-task
model against them. Every trial is an MLflow child run of its stage's parent run.
"""

from __future__ import annotations

from multitune.tuning.baselines import BaselinesOutcome, read_baselines, run_baselines
from multitune.tuning.sweep import SweepOutcome, run_sweep

__all__ = ["BaselinesOutcome", "SweepOutcome", "read_baselines", "run_baselines", "run_sweep"]
