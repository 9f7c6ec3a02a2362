"""Uncertainty weighting (Kendall, Gal & Cipolla, 2018, "Multi-Task Learning Using Uncertainty
to Weigh Losses for Scene Geometry and Semantics", eq. 7 and 10).

Each task has a learned log-variance ``s_k``; ``L = sum_k exp(-s_k) L_k + s_k`` (the form used
by LibMTL, constant factors dropped). ``s_k`` trains with the model's optimizer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multitune.config.methods.weighting import UncertaintyConfig
from multitune.training.weighting.base import WEIGHTINGS, LossWeighting, StepContext


@WEIGHTINGS.register(UncertaintyConfig)
class UncertaintyWeighting(LossWeighting):
    """``sum_k exp(-s_k) L_k + s_k``."""

    def __init__(self, config: UncertaintyConfig, tasks: list[str]) -> None:
        super().__init__(config, tasks)
        self.log_var = nn.Parameter(torch.zeros(len(tasks)))

    def combine(self, losses: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """Precision-weighted losses plus the log-variance regulariser."""
        precision = torch.exp(-self.log_var)
        return (precision * losses + self.log_var).sum(), precision.detach().clone()
