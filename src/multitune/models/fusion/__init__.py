"""Fusion methods: one module each, registered in `FUSIONS`."""

from __future__ import annotations

from multitune.models.fusion import (  # noqa: F401 - registers the methods
    attention,
    concat,
    film,
    gated,
    hierarchical,
    mean,
)
from multitune.models.fusion.base import FUSIONS, Fusion, FusionConfig

__all__ = ["FUSIONS", "Fusion", "FusionConfig"]
