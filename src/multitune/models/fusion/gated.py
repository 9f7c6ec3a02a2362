"""Gated fusion: learned per-row, per-modality gates weight the modality encodings.

Gates ``g = sigmoid(W [h_1; ...; h_M] + b)`` and output ``sum_m g_m h_m``: the gated
multimodal unit of Arevalo et al., 2017, "Gated Multimodal Units for Information Fusion"
(eq. 5), generalised from two modalities to M with one gate per modality.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multitune.config.methods.fusion import GatedConfig
from multitune.models.fusion.base import FUSIONS, Fusion


@FUSIONS.register(GatedConfig)
class GatedFusion(Fusion):
    """``sum_m sigmoid(W h + b)_m * h_m``."""

    def __init__(self, config: GatedConfig, modalities: list[str], dim: int) -> None:
        super().__init__(config, modalities, dim)
        self.gate = nn.Linear(dim * len(modalities), len(modalities))
        self.out_dim = dim

    def fuse(self, xs: list[Tensor]) -> Tensor:
        """Weight each modality by its gate and sum."""
        stacked = torch.stack(xs, dim=1)  # (batch, M, dim)
        gates = torch.sigmoid(self.gate(stacked.flatten(1)))  # (batch, M)
        return (gates.unsqueeze(-1) * stacked).sum(dim=1)
