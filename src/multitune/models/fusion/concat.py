"""Concatenation fusion: the modality encodings side by side (late fusion baseline)."""

from __future__ import annotations

import torch
from torch import Tensor

from multitune.config.methods.fusion import ConcatConfig
from multitune.models.fusion.base import FUSIONS, Fusion


@FUSIONS.register(ConcatConfig)
class ConcatFusion(Fusion):
    """``[h_1; ...; h_M]``."""

    def __init__(self, config: ConcatConfig, modalities: list[str], dim: int) -> None:
        super().__init__(config, modalities, dim)
        self.out_dim = dim * len(modalities)

    def fuse(self, xs: list[Tensor]) -> Tensor:
        """Concatenate along features."""
        return xs[0] if len(xs) == 1 else torch.cat(xs, dim=-1)
