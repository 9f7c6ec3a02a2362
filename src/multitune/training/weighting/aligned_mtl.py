"""Aligned-MTL: aligns the principal components of the gradient system to remove conflicts and
dominance (Senushkin et al., 2023, "Independent Component Alignment for Multi-Task Learning",
CVPR, Algorithm 1). Via `torchjd.aggregation.AlignedMTL`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from multitune.registry import MethodConfig
from multitune.training.weighting.base import WEIGHTINGS
from multitune.training.weighting.jacobian import TorchJDAggregator


class AlignedMtlConfig(MethodConfig):
    """Gradient system aligned to a well-conditioned one."""

    name: Literal["aligned_mtl"] = "aligned_mtl"
    scale_mode: Literal["min", "median", "rmse"] = Field(
        default="min", description="Eigenvalue that sets the scale of the aligned system."
    )


@WEIGHTINGS.register(AlignedMtlConfig)
class AlignedMtlAggregator(TorchJDAggregator):
    """Gradient system aligned to a well-conditioned one."""

    config: AlignedMtlConfig

    def make_aggregator(self) -> object:
        """``AlignedMTL(scale_mode=self.config.scale_mode)``."""
        from torchjd.aggregation import AlignedMTL

        return AlignedMTL(scale_mode=self.config.scale_mode)
