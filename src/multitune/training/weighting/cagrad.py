"""CAGrad: conflict-averse gradient descent (Liu et al., 2021, "Conflict-Averse Gradient
Descent for Multi-task Learning", NeurIPS, Algorithm 1): the update maximising the worst task
improvement within a ball of radius c*|g0| around the mean gradient. Via
`torchjd.aggregation.CAGrad` (needs cvxpy)."""

from __future__ import annotations

from multitune.config.methods.weighting import CAGradConfig
from multitune.training.weighting.base import WEIGHTINGS
from multitune.training.weighting.jacobian import TorchJDAggregator


@WEIGHTINGS.register(CAGradConfig)
class CAGradAggregator(TorchJDAggregator):
    """Worst-case improvement near the average gradient."""

    config: CAGradConfig

    def make_aggregator(self) -> object:
        """``CAGrad(c=self.config.c)``."""
        from torchjd.aggregation import CAGrad  # start-up time: see jacobian.py

        return CAGrad(c=self.config.c)
