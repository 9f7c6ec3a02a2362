"""FiLM fusion: one modality conditions the others by feature-wise affine modulation.

``h'_m = (1 + gamma(c)) * h_m + beta(c)`` for every modality m other than the conditioner c
(Perez et al., 2018, "FiLM: Visual Reasoning with a General Conditioning Layer", eq. 1; the
``1 +`` keeps the identity at initialisation). Output ``[c; mean_m h'_m]``; with one modality
there is nothing to modulate and the output is ``c``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multitune.config.methods.fusion import FilmConfig
from multitune.models.fusion.base import FUSIONS, Fusion


@FUSIONS.register(FilmConfig)
class FilmFusion(Fusion):
    """``[c; mean_m ((1 + gamma(c)) h_m + beta(c))]``."""

    def __init__(self, config: FilmConfig, modalities: list[str], dim: int) -> None:
        super().__init__(config, modalities, dim)
        cond = config.conditioner or modalities[0]
        if cond not in modalities:
            raise ValueError(
                f"fusion.conditioner {cond!r} is not a modality; modalities: "
                f"{', '.join(modalities)}"
            )
        self.cond_index = modalities.index(cond)
        self.alone = len(modalities) == 1
        if not self.alone:
            self.film = nn.Linear(dim, 2 * dim)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        self.out_dim = dim if self.alone else 2 * dim

    def fuse(self, xs: list[Tensor]) -> Tensor:
        """Modulate the other modalities by the conditioner."""
        c = xs[self.cond_index]
        if self.alone:
            return c
        gamma, beta = self.film(c).chunk(2, dim=-1)
        others = torch.stack([x for i, x in enumerate(xs) if i != self.cond_index], dim=1)
        modulated = (1 + gamma.unsqueeze(1)) * others + beta.unsqueeze(1)
        return torch.cat([c, modulated.mean(dim=1)], dim=-1)
