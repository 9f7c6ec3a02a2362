"""The search: Ray Tune + OptunaSearch + ASHA. The only package that imports ray.

`run_baselines` tunes one single-task model per task; `run_sweep` tunes the multi-task
model against them. Every trial is an MLflow child run of its stage's parent run.

The names are loaded on first use: Ray workers import `multitune.tuning.trainable` and
should not pay for the driver's imports (MLflow, the stage code).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multitune.tuning.baselines import BaselinesOutcome, read_baselines, run_baselines
    from multitune.tuning.sweep import SweepOutcome, run_sweep

_EXPORTS = {
    "BaselinesOutcome": "multitune.tuning.baselines",
    "read_baselines": "multitune.tuning.baselines",
    "run_baselines": "multitune.tuning.baselines",
    "SweepOutcome": "multitune.tuning.sweep",
    "run_sweep": "multitune.tuning.sweep",
}

__all__ = ["BaselinesOutcome", "SweepOutcome", "read_baselines", "run_baselines", "run_sweep"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'multitune.tuning' has no attribute {name!r}")
