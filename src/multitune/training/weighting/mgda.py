"""MGDA: the min-norm point of the convex hull of the task gradients (Désidéri, 2012; Sener &
Koltun, 2018, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS, Algorithm 2
Frank-Wolfe solver). Via `torchjd.aggregation.MGDA`."""

from __future__ import annotations

from multitune.config.methods.weighting import MGDAConfig
from multitune.training.weighting.base import WEIGHTINGS
from multitune.training.weighting.jacobian import TorchJDAggregator


@WEIGHTINGS.register(MGDAConfig)
class MGDAAggregator(TorchJDAggregator):
    """Minimum-norm convex combination of task gradients."""

    config: MGDAConfig

    def make_aggregator(self) -> object:
        """``MGDA(epsilon=self.config.epsilon, max_iters=self.config.max_iters)``."""
        from torchjd.aggregation import MGDA  # start-up time: see jacobian.py

        return MGDA(epsilon=self.config.epsilon, max_iters=self.config.max_iters)
