"""Hierarchical fusion: declared groups of modalities are fused first, then the groups.

Within a group the encodings are concatenated and projected back to ``dim`` (Linear + GELU);
the group representations are then concatenated. A two-level scheme in the spirit of
hierarchical multimodal fusion (e.g. Majumder et al., 2018, "Multimodal Sentiment Analysis
Using Hierarchical Fusion with Context Modeling"). Modalities in no group form a group of their
own.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multitune.config.methods.fusion import HierarchicalConfig
from multitune.models.fusion.base import FUSIONS, Fusion


@FUSIONS.register(HierarchicalConfig)
class HierarchicalFusion(Fusion):
    """``[f_1(h_G1); ...; f_K(h_GK)]`` with ``f_k`` = Linear+GELU on the group's concat."""

    def __init__(self, config: HierarchicalConfig, modalities: list[str], dim: int) -> None:
        super().__init__(config, modalities, dim)
        seen: dict[str, str] = {}
        groups: list[list[int]] = []
        for group, members in config.groups.items():
            for m in members:
                if m not in modalities:
                    raise ValueError(
                        f"fusion.groups.{group} names unknown modality {m!r}; modalities: "
                        f"{', '.join(modalities)}"
                    )
                if m in seen:
                    raise ValueError(f"modality {m!r} is in groups {seen[m]!r} and {group!r}")
                seen[m] = group
            if members:
                groups.append([modalities.index(m) for m in members])
        groups += [[i] for i, m in enumerate(modalities) if m not in seen]
        self.groups = groups
        self.project = nn.ModuleList(
            nn.Sequential(nn.Linear(dim * len(g), dim), nn.GELU()) if len(g) > 1 else nn.Identity()
            for g in groups
        )
        self.out_dim = dim * len(groups)

    def fuse(self, xs: list[Tensor]) -> Tensor:
        """Fuse within groups, then concatenate the groups."""
        parts = [
            proj(torch.cat([xs[i] for i in g], dim=-1))
            for g, proj in zip(self.groups, self.project, strict=True)
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
