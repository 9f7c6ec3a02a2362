"""Distribution head: a soft target built from a categorical label, KL-divergence loss.

The target puts ``1 - smoothing`` on the label and spreads ``smoothing`` evenly over the other
classes (label smoothing as a target distribution, Szegedy et al., 2016); a row without a label
gets the uniform distribution (``missing: uniform``) or no loss (``missing: mask``). The loss is
``KL(target || softmax(logits))`` per row, averaged over the covered rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from multitune.models.heads.base import TaskHead, masked_mean, register_head


@register_head("distribution")
class DistributionHead(TaskHead):
    """Logits ``(batch, C)``; target: the class index ``(batch,)`` (long)."""

    def soft_target(self, target: Tensor, labelled: Tensor) -> Tensor:
        """The smoothed target distribution ``(batch, C)``; uniform where unlabelled."""
        n_classes = self.spec.n_outputs
        s = float(self.spec.config.smoothing) if n_classes > 1 else 0.0
        one_hot = F.one_hot(target, n_classes).to(torch.float32)
        soft = one_hot * (1.0 - s) + (1.0 - one_hot) * (s / max(n_classes - 1, 1))
        uniform = torch.full_like(soft, 1.0 / n_classes)
        return torch.where(labelled.unsqueeze(-1), soft, uniform)

    def loss(self, out: Tensor, target: Tensor, labelled: Tensor) -> Tensor:
        """KL(soft target || predicted) over covered rows."""
        soft = self.soft_target(target, labelled)
        per_row = (torch.xlogy(soft, soft) - soft * torch.log_softmax(out, dim=-1)).sum(-1)
        covered = labelled if self.spec.config.missing == "mask" else torch.ones_like(labelled)
        return masked_mean(per_row, covered)

    def predict(self, out: Tensor) -> Tensor:
        """Predicted distribution ``(batch, C)``."""
        return torch.softmax(out, dim=-1)
