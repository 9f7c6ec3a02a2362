"""Regression head: predicts the target standardized with train statistics; MSE or Huber loss
(Huber, 1964, "Robust Estimation of a Location Parameter")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from multitune.models.heads.base import TaskHead, TaskSpec, masked_mean, register_head


@register_head("regression")
class RegressionHead(TaskHead):
    """Output: the standardized value ``(batch,)``; target: the value in original units."""

    mean: Tensor
    std: Tensor

    def __init__(self, spec: TaskSpec, in_dim: int) -> None:
        super().__init__(spec, in_dim)
        self.register_buffer("mean", torch.zeros(1))
        self.register_buffer("std", torch.ones(1))

    def forward(self, z: Tensor) -> Tensor:
        """The standardized prediction."""
        return self.linear(z).squeeze(-1)

    def fit_statistics(self, target: Tensor, labelled: Tensor) -> None:
        """Mean and standard deviation of the labelled train targets."""
        y = target[labelled].double()
        if y.numel() == 0:
            return
        std = y.std(unbiased=False).item() if y.numel() > 1 else 1.0
        self.mean.fill_(y.mean().item())
        self.std.fill_(std if std > 1e-12 else 1.0)

    def loss(self, out: Tensor, target: Tensor, labelled: Tensor) -> Tensor:
        """MSE or Huber on standardized targets, labelled rows."""
        z = (target - self.mean) / self.std
        if self.spec.config.loss == "huber":
            per_row = F.huber_loss(out, z, delta=self.spec.config.huber_delta, reduction="none")
        else:
            per_row = (out - z) ** 2
        return masked_mean(per_row, labelled)

    def predict(self, out: Tensor) -> Tensor:
        """The value in original units."""
        return out * self.std + self.mean
