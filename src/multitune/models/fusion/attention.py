"""Attention fusion: self-attention over one token per modality.

Each modality's encoding is a token (plus a learned modality embedding); one multi-head
self-attention layer with a residual connection and LayerNorm mixes them, and the tokens are
mean-pooled (Vaswani et al., 2017, "Attention Is All You Need", eq. 1; as a fusion operator in
e.g. Tsai et al., 2019, "Multimodal Transformer").
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from multitune.models.fusion.base import FUSIONS, Fusion, FusionConfig


class AttentionConfig(FusionConfig):
    """Self-attention across modality tokens, then mean-pool: ``out_dim = dim``."""

    name: Literal["attention"] = "attention"
    heads: int = Field(default=4, ge=1, description="Attention heads; must divide encoder.hidden.")
    dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Dropout on attention weights."
    )


@FUSIONS.register(AttentionConfig)
class AttentionFusion(Fusion):
    """``mean_m LayerNorm(t_m + MHA(t)_m)`` with ``t_m = h_m + e_m``."""

    def __init__(self, config: AttentionConfig, modalities: list[str], dim: int) -> None:
        super().__init__(config, modalities, dim)
        if dim % config.heads:
            raise ValueError(
                f"fusion.heads={config.heads} must divide the encoder width {dim} "
                "(model.encoder.hidden)"
            )
        self.embed = nn.Parameter(torch.randn(len(modalities), dim) * 0.02)
        self.attn = nn.MultiheadAttention(
            dim, config.heads, dropout=config.dropout, batch_first=True
        )
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def fuse(self, xs: list[Tensor]) -> Tensor:
        """Attend across modalities and pool."""
        tokens = torch.stack(xs, dim=1) + self.embed
        mixed, _ = self.attn(tokens, tokens, tokens, need_weights=False)
        return self.norm(tokens + mixed).mean(dim=1)
