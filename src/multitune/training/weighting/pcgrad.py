"""PCGrad: gradient surgery (Yu et al., 2020, "Gradient Surgery for Multi-Task Learning",
NeurIPS, Algorithm 1): each task gradient is projected onto the normal plane of every task
gradient it conflicts with. Via `torchjd.aggregation.PCGrad`."""

from __future__ import annotations

from multitune.config.methods.weighting import PCGradConfig
from multitune.training.weighting.base import WEIGHTINGS
from multitune.training.weighting.jacobian import TorchJDAggregator


@WEIGHTINGS.register(PCGradConfig)
class PCGradAggregator(TorchJDAggregator):
    """Project away conflicting gradient components."""

    config: PCGradConfig

    def make_aggregator(self) -> object:
        """``PCGrad()``."""
        from torchjd.aggregation import PCGrad  # start-up time: see jacobian.py

        return PCGrad()
