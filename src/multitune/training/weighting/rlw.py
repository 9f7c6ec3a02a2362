"""Random Loss Weighting (Lin et al., 2022, "Reasonable Effectiveness of Random Weighting: A
Litmus Test for Multi-Task Learning", TMLR, eq. 3): each step the weights are
``softmax(lambda)``, ``lambda ~ N(0, I)`` (drawn from the seeded torch generator)."""

from __future__ import annotations

import torch
from torch import Tensor

from multitune.config.methods.weighting import RlwConfig
from multitune.training.weighting.base import WEIGHTINGS, LossWeighting, StepContext


@WEIGHTINGS.register(RlwConfig)
class RlwWeighting(LossWeighting):
    """``sum_k softmax(lambda)_k L_k``."""

    def combine(self, losses: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """Weighted sum with fresh random weights."""
        w = torch.softmax(torch.randn(len(self.tasks)), dim=0).to(losses.device)
        return (w * losses).sum(), w
