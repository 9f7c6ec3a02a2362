"""Static weights: ``L = sum_k w_k L_k`` with fixed per-task weights; equal weighting (EW)
when none are given (the baseline of e.g. Lin et al., 2022, "Reasonable Effectiveness of
Random Weighting", eq. 1). Per-task weights are what a sweep can search."""

from __future__ import annotations

import torch
from torch import Tensor

from multitune.config.methods.weighting import StaticConfig
from multitune.training.weighting.base import WEIGHTINGS, LossWeighting, StepContext


@WEIGHTINGS.register(StaticConfig)
class StaticWeighting(LossWeighting):
    """``sum_k w_k L_k``."""

    w: Tensor

    def __init__(self, config: StaticConfig, tasks: list[str]) -> None:
        super().__init__(config, tasks)
        unknown = sorted(set(config.weights) - set(tasks))
        if unknown:
            raise ValueError(
                f"train.weighting.weights names unknown task(s) {', '.join(unknown)}; "
                f"tasks: {', '.join(tasks)}"
            )
        negative = sorted(t for t, w in config.weights.items() if w < 0)
        if negative:
            raise ValueError(f"train.weighting.weights must be >= 0; negative: {negative}")
        w = [float(config.weights.get(t, 1.0)) for t in tasks]
        self.register_buffer("w", torch.tensor(w))

    def combine(self, losses: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """Weighted sum."""
        return (self.w * losses).sum(), self.w.detach().clone()
