"""UPGrad: each task gradient is projected onto the dual cone of all of them and the
projections are averaged (Quinton & Rey, 2024, "Jacobian Descent for Multi-Objective
Optimization", Algorithm 1). Via `torchjd.aggregation.UPGrad` (quadprog solver)."""

from __future__ import annotations

from typing import Literal

from multitune.registry import MethodConfig
from multitune.training.weighting.base import WEIGHTINGS
from multitune.training.weighting.jacobian import TorchJDAggregator


class UPGradConfig(MethodConfig):
    """Average of gradients projected onto the dual cone."""

    name: Literal["upgrad"] = "upgrad"


@WEIGHTINGS.register(UPGradConfig)
class UPGradAggregator(TorchJDAggregator):
    """Average of gradients projected onto the dual cone."""

    config: UPGradConfig

    def make_aggregator(self) -> object:
        """``UPGrad()``."""
        from torchjd.aggregation import UPGrad

        return UPGrad()
