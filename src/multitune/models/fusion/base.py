"""The fusion interface: per-modality encodings -> one representation per row."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from multitune.config.methods.fusion import FusionConfig, FusionMethod
from multitune.registry import Registry


class Fusion(nn.Module, ABC):
    """Combines the encodings of the modalities into one vector per row.

    Contract:
      * built as ``Impl(config, modalities, dim)``: the modality names, in a fixed order, each
        encoded to ``(batch, dim)`` by its `ModalityEncoder`;
      * ``forward(encoded)`` takes ``{modality: (batch, dim)}`` and returns ``(batch, out_dim)``;
        subclasses set ``self.out_dim`` in ``__init__`` and implement ``fuse``;
      * works with a single modality, and every parameter it creates takes part in ``forward``
        (so every trainable parameter receives a gradient);
      * modality dropout is applied here, before ``fuse``, in training mode only.
    """

    out_dim: int

    def __init__(self, config: FusionConfig, modalities: list[str], dim: int) -> None:
        super().__init__()
        if not modalities:
            raise ValueError("a fusion needs at least one modality")
        self.config = config
        self.modalities = list(modalities)
        self.dim = dim
        self.p_drop = config.modality_dropout
        if self.p_drop > 0:
            self.replacement = nn.Parameter(torch.zeros(len(modalities), dim))

    def forward(self, encoded: dict[str, Tensor]) -> Tensor:
        """Fuse ``{modality: (batch, dim)}`` into ``(batch, out_dim)``."""
        xs = [encoded[m] for m in self.modalities]
        if self.training and self.p_drop > 0:
            xs = self._drop(xs)
        return self.fuse(xs)

    def _drop(self, xs: list[Tensor]) -> list[Tensor]:
        out = []
        for i, x in enumerate(xs):
            dropped = torch.rand(x.shape[0], 1, device=x.device) < self.p_drop
            out.append(torch.where(dropped, self.replacement[i].expand_as(x), x))
        return out

    @abstractmethod
    def fuse(self, xs: list[Tensor]) -> Tensor:
        """Combine one ``(batch, dim)`` tensor per modality (in `self.modalities` order)."""


FUSIONS: Registry[Fusion] = Registry("fusion", FusionMethod)
