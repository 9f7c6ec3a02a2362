"""The final stage's library: retrain the best configs over seeds, compare, report, register.

Imports no mlflow itself: runs and the registry go through `multitune.tracking`.
"""

from __future__ import annotations

from multitune.final.paths import FinalPaths
from multitune.final.stage import FinalOutcome, run_final

__all__ = ["FinalOutcome", "FinalPaths", "run_final"]
