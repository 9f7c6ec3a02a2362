"""CAGrad: conflict-averse gradient descent (Liu et al., 2021, "Conflict-Averse Gradient
Descent for Multi-task Learning", NeurIPS, Algorithm 1): the update maximising the worst task
improvement within a ball of radius c*|g0| around the mean gradient. Via
`torchjd.aggregation.CAGrad` (needs cvxpy)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from multitune.registry import MethodConfig
from multitune.training.weighting.base import WEIGHTINGS
from multitune.training.weighting.jacobian import TorchJDAggregator


class CAGradConfig(MethodConfig):
    """Worst-case improvement near the average gradient."""

    name: Literal["cagrad"] = "cagrad"
    c: float = Field(
        default=0.5, ge=0.0, description="Radius of the ball around the mean gradient."
    )


@WEIGHTINGS.register(CAGradConfig)
class CAGradAggregator(TorchJDAggregator):
    """Worst-case improvement near the average gradient."""

    config: CAGradConfig

    def make_aggregator(self) -> object:
        """``CAGrad(c=self.config.c)``."""
        from torchjd.aggregation import CAGrad

        return CAGrad(c=self.config.c)
