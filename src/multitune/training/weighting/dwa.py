"""Dynamic Weight Average (Liu, Johns & Davison, 2019, "End-to-End Multi-Task Learning with
Attention", CVPR, eq. 2).

``w_k(t) = K exp(r_k / T) / sum_i exp(r_i / T)`` with ``r_k = L_k(t-1) / L_k(t-2)``, the ratio
of the task's mean train loss over the last two epochs; ``w_k = 1`` for the first two epochs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from multitune.config.methods.weighting import DwaConfig
from multitune.training.weighting.base import WEIGHTINGS, LossWeighting, StepContext


@WEIGHTINGS.register(DwaConfig)
class DwaWeighting(LossWeighting):
    """Epoch-level weights from loss ratios."""

    history: Tensor
    seen: Tensor
    w: Tensor

    def __init__(self, config: DwaConfig, tasks: list[str]) -> None:
        super().__init__(config, tasks)
        self.temperature = config.temperature
        k = len(tasks)
        self.register_buffer("history", torch.zeros(2, k))  # losses of epochs t-2, t-1
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("w", torch.ones(k))

    def combine(self, losses: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """Weighted sum with this epoch's weights."""
        return (self.w * losses).sum(), self.w.detach().clone()

    def epoch_end(self, epoch: int, mean_losses: Tensor) -> None:
        """Record the epoch's losses and compute the next epoch's weights."""
        self.history[0] = self.history[1]
        self.history[1] = mean_losses.detach()
        self.seen += 1
        if int(self.seen) >= 2:
            ratio = self.history[1] / self.history[0].clamp_min(1e-12)
            self.w.copy_(len(self.tasks) * torch.softmax(ratio / self.temperature, dim=0))
