"""Loss-balancing methods: one module each, registered in `WEIGHTINGS`.

Loss weightings (`LossWeighting`): static, uncertainty, dwa, gradnorm, rlw, famo.
Gradient aggregators (`GradientAggregator`, via torchjd): pcgrad, mgda, cagrad, nash_mtl,
upgrad, imtl_g, aligned_mtl.
"""

from __future__ import annotations

from multitune.training.weighting import (  # noqa: F401 - registers the methods
    aligned_mtl,
    cagrad,
    dwa,
    famo,
    gradnorm,
    imtl_g,
    mgda,
    nash_mtl,
    pcgrad,
    rlw,
    static,
    uncertainty,
    upgrad,
)
from multitune.training.weighting.base import (
    WEIGHTINGS,
    Balancer,
    GradientAggregator,
    LossWeighting,
    StepContext,
)

__all__ = ["WEIGHTINGS", "Balancer", "GradientAggregator", "LossWeighting", "StepContext"]
