"""PCGrad: gradient surgery (Yu et al., 2020, "Gradient Surgery for Multi-Task Learning",
NeurIPS, Algorithm 1): each task gradient is projected onto the normal plane of every task
gradient it conflicts with. Via `torchjd.aggregation.PCGrad`."""

from __future__ import annotations

from typing import Literal

from multitune.registry import MethodConfig
from multitune.training.weighting.base import WEIGHTINGS
from multitune.training.weighting.jacobian import TorchJDAggregator


class PCGradConfig(MethodConfig):
    """Project away conflicting gradient components."""

    name: Literal["pcgrad"] = "pcgrad"


@WEIGHTINGS.register(PCGradConfig)
class PCGradAggregator(TorchJDAggregator):
    """Project away conflicting gradient components."""

    config: PCGradConfig

    def make_aggregator(self) -> object:
        """``PCGrad()``."""
        from torchjd.aggregation import PCGrad

        return PCGrad()
