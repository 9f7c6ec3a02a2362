"""Loss-balancing methods: one module each, registered in `WEIGHTINGS`."""

from __future__ import annotations

from multitune.training.weighting import static  # noqa: F401 - registers the methods
from multitune.training.weighting.base import (
    WEIGHTINGS,
    Balancer,
    GradientAggregator,
    LossWeighting,
    StepContext,
)

__all__ = ["WEIGHTINGS", "Balancer", "GradientAggregator", "LossWeighting", "StepContext"]
