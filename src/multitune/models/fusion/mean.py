"""Mean fusion: the average of the modality encodings."""

from __future__ import annotations

import torch
from torch import Tensor

from multitune.config.methods.fusion import MeanConfig
from multitune.models.fusion.base import FUSIONS, Fusion


@FUSIONS.register(MeanConfig)
class MeanFusion(Fusion):
    """``(1/M) sum_m h_m``."""

    def __init__(self, config: MeanConfig, modalities: list[str], dim: int) -> None:
        super().__init__(config, modalities, dim)
        self.out_dim = dim

    def fuse(self, xs: list[Tensor]) -> Tensor:
        """Average over modalities."""
        return xs[0] if len(xs) == 1 else torch.stack(xs, dim=1).mean(dim=1)
