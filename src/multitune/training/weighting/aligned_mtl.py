"""Aligned-MTL: aligns the principal components of the gradient system to remove conflicts and
dominance (Senushkin et al., 2023, "Independent Component Alignment for Multi-Task Learning",
CVPR, Algorithm 1). Via `torchjd.aggregation.AlignedMTL`."""

from __future__ import annotations

from multitune.config.methods.weighting import AlignedMtlConfig
from multitune.training.weighting.base import WEIGHTINGS
from multitune.training.weighting.jacobian import TorchJDAggregator


@WEIGHTINGS.register(AlignedMtlConfig)
class AlignedMtlAggregator(TorchJDAggregator):
    """Gradient system aligned to a well-conditioned one."""

    config: AlignedMtlConfig

    def make_aggregator(self) -> object:
        """``AlignedMTL(scale_mode=self.config.scale_mode)``."""
        from torchjd.aggregation import AlignedMTL  # start-up time: see jacobian.py

        return AlignedMTL(scale_mode=self.config.scale_mode)
