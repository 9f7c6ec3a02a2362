"""Multilabel head: one independent sigmoid per class, binary cross-entropy averaged over
classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from multitune.models.heads.base import TaskHead, masked_mean, register_head


@register_head("multilabel")
class MultilabelHead(TaskHead):
    """Logits ``(batch, C)``; target: 0/1 indicators ``(batch, C)``."""

    def loss(self, out: Tensor, target: Tensor, labelled: Tensor) -> Tensor:
        """Mean BCE over classes, then over labelled rows."""
        per_row = F.binary_cross_entropy_with_logits(out, target, reduction="none").mean(-1)
        return masked_mean(per_row, labelled)

    def predict(self, out: Tensor) -> Tensor:
        """Per-class probabilities ``(batch, C)``."""
        return torch.sigmoid(out)
