"""`baselines:` and `sweep:` — the search (issue 4 fills these)."""

from __future__ import annotations

from multitune.config._base import StrictModel


class BaselinesConfig(StrictModel):
    """Single-task tuning per task."""


class SweepConfig(StrictModel):
    """The multi-task Ray Tune sweep."""
