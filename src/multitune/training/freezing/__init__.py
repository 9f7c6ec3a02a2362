"""Freezing policies: one module each, registered in `FREEZINGS`."""

from __future__ import annotations

from multitune.training.freezing import (  # noqa: F401 - registers the methods
    frozen_heads,
    frozen_trunk,
    none,
    warm_start,
)
from multitune.training.freezing.base import FREEZINGS, FreezingConfig, FreezingPolicy

__all__ = ["FREEZINGS", "FreezingConfig", "FreezingPolicy"]
