"""Classification head: softmax over classes, cross-entropy with label smoothing and optional
class weights (Szegedy et al., 2016, "Rethinking the Inception Architecture", sec. 7)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from multitune.models.heads.base import TaskHead, TaskSpec, masked_mean, register_head


@register_head("classification")
class ClassificationHead(TaskHead):
    """Logits ``(batch, C)``; target: class index ``(batch,)`` (long)."""

    class_weight: Tensor

    def __init__(self, spec: TaskSpec, in_dim: int) -> None:
        super().__init__(spec, in_dim)
        self.register_buffer("class_weight", torch.ones(spec.n_outputs))
        self.smoothing = float(spec.config.label_smoothing)

    def fit_statistics(self, target: Tensor, labelled: Tensor) -> None:
        """Class weights: 'balanced' = n / (C * count_c) on train rows, or the given mapping."""
        setting = self.spec.config.class_weights
        classes = self.spec.classes or []
        if setting is None:
            return
        if setting == "balanced":
            counts = torch.bincount(target[labelled], minlength=len(classes)).float()
            w = counts.sum() / (len(classes) * counts.clamp_min(1.0))
        else:
            unknown = sorted(set(setting) - set(classes))
            if unknown:
                raise ValueError(
                    f"tasks.{self.spec.name}.class_weights names unknown class(es) "
                    f"{', '.join(unknown)}; classes: {', '.join(classes)}"
                )
            w = torch.tensor([float(setting.get(c, 1.0)) for c in classes])
        self.class_weight.copy_(w.to(self.class_weight))

    def loss(self, out: Tensor, target: Tensor, labelled: Tensor) -> Tensor:
        """Weighted, label-smoothed cross-entropy over labelled rows."""
        per_row = F.cross_entropy(out, target, label_smoothing=self.smoothing, reduction="none")
        if self.spec.config.class_weights is None:
            return masked_mean(per_row, labelled)
        # Weighted mean, as reduction="mean" with `weight`: sum w_y l / sum w_y.
        return masked_mean(per_row, labelled, weights=self.class_weight[target])

    def predict(self, out: Tensor) -> Tensor:
        """Class probabilities ``(batch, C)``."""
        return torch.softmax(out, dim=-1)
