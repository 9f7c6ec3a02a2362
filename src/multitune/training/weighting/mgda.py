"""MGDA: the min-norm point of the convex hull of the task gradients (Désidéri, 2012; Sener &
Koltun, 2018, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS, Algorithm 2
Frank-Wolfe solver). Via `torchjd.aggregation.MGDA`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from multitune.registry import MethodConfig
from multitune.training.weighting.base import WEIGHTINGS
from multitune.training.weighting.jacobian import TorchJDAggregator


class MGDAConfig(MethodConfig):
    """Minimum-norm convex combination of task gradients."""

    name: Literal["mgda"] = "mgda"
    epsilon: float = Field(default=1e-3, gt=0.0, description="Frank-Wolfe stopping tolerance.")
    max_iters: int = Field(default=100, ge=1, description="Frank-Wolfe iterations at most.")


@WEIGHTINGS.register(MGDAConfig)
class MGDAAggregator(TorchJDAggregator):
    """Minimum-norm convex combination of task gradients."""

    config: MGDAConfig

    def make_aggregator(self) -> object:
        """``MGDA(epsilon=self.config.epsilon, max_iters=self.config.max_iters)``."""
        from torchjd.aggregation import MGDA

        return MGDA(epsilon=self.config.epsilon, max_iters=self.config.max_iters)
