"""UPGrad: each task gradient is projected onto the dual cone of all of them and the
projections are averaged (Quinton & Rey, 2024, "Jacobian Descent for Multi-Objective
Optimization", Algorithm 1). Via `torchjd.aggregation.UPGrad` (quadprog solver)."""

from __future__ import annotations

from multitune.config.methods.weighting import UPGradConfig
from multitune.training.weighting.base import WEIGHTINGS
from multitune.training.weighting.jacobian import TorchJDAggregator


@WEIGHTINGS.register(UPGradConfig)
class UPGradAggregator(TorchJDAggregator):
    """Average of gradients projected onto the dual cone."""

    config: UPGradConfig

    def make_aggregator(self) -> object:
        """``UPGrad()``."""
        from torchjd.aggregation import UPGrad  # start-up time: see jacobian.py

        return UPGrad()
