"""Binary head: one logit, binary cross-entropy with an optional positive-class weight."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from multitune.models.heads.base import TaskHead, TaskSpec, masked_mean, register_head


@register_head("binary")
class BinaryHead(TaskHead):
    """Logit ``(batch,)``; target: 1.0 for the second class, 0.0 for the first."""

    pos_weight: Tensor

    def __init__(self, spec: TaskSpec, in_dim: int) -> None:
        super().__init__(spec, in_dim)
        self.register_buffer("pos_weight", torch.ones(1))

    def forward(self, z: Tensor) -> Tensor:
        """The logit of the positive (second) class."""
        return self.linear(z).squeeze(-1)

    def fit_statistics(self, target: Tensor, labelled: Tensor) -> None:
        """pos_weight: a number, or 'balanced' = negatives / positives on train rows."""
        setting = self.spec.config.pos_weight
        if setting is None:
            return
        if setting == "balanced":
            y = target[labelled]
            pos = y.sum()
            value = ((y.numel() - pos) / pos.clamp_min(1.0)).item()
        else:
            value = float(setting)
        self.pos_weight.fill_(value)

    def loss(self, out: Tensor, target: Tensor, labelled: Tensor) -> Tensor:
        """BCE with logits over labelled rows."""
        per_row = F.binary_cross_entropy_with_logits(
            out, target, pos_weight=self.pos_weight, reduction="none"
        )
        return masked_mean(per_row, labelled)

    def predict(self, out: Tensor) -> Tensor:
        """P(second class) ``(batch,)``."""
        return torch.sigmoid(out)
