"""Freezing policies: one module each, registered in `FREEZINGS`."""

from __future__ import annotations

from multitune.training.freezing import none  # noqa: F401 - registers the methods
from multitune.training.freezing.base import FREEZINGS, FreezingConfig, FreezingPolicy

__all__ = ["FREEZINGS", "FreezingConfig", "FreezingPolicy"]
