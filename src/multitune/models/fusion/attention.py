"""Attention fusion: self-attention over one token per modality.

Each modality's encoding is a token (plus a learned modality embedding); one multi-head
self-attention layer with a residual connection and LayerNorm mixes them, and the tokens are
mean-pooled (Vaswani et al., 2017, "Attention Is All You Need", eq. 1; as a fusion operator in
e.g. Tsai et al., 2019, "Multimodal Transformer").
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multitune.config.methods.fusion import AttentionConfig
from multitune.models.fusion.base import FUSIONS, Fusion


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
