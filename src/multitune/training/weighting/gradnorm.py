"""GradNorm (Chen et al., 2018, "GradNorm: Gradient Normalization for Adaptive Loss Balancing
in Deep Multitask Networks", ICML, eq. 1-2).

Weights ``w_k`` are learned so that each task's weighted gradient norm ``G_k = w_k ||grad L_k||``
tracks ``mean(G) * r_k^alpha``, with ``r_k`` the task's loss relative to its first step,
divided by the mean ratio. The gradient is taken at the last shared representation (LibMTL's
``rep_grad`` variant) rather than at the last shared layer's weights, which makes it independent
of the sharing architecture. Since ``G_k`` is linear in ``w_k``, the gradient of the GradNorm
loss ``sum_k |G_k - target_k|`` is ``sign(G_k - target_k) ||grad L_k||`` — no double backward.
Weights update with their own Adam and are renormalised to sum to K.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from multitune.config.methods.weighting import GradnormConfig
from multitune.training.weighting.base import WEIGHTINGS, LossWeighting, StepContext


@WEIGHTINGS.register(GradnormConfig)
class GradnormWeighting(LossWeighting):
    """``sum_k w_k L_k`` with GradNorm-updated ``w``."""

    initial: Tensor

    def __init__(self, config: GradnormConfig, tasks: list[str]) -> None:
        super().__init__(config, tasks)
        self.alpha = config.alpha
        self.w = nn.Parameter(torch.ones(len(tasks)))
        self.register_buffer("initial", torch.full((len(tasks),), float("nan")))
        self._opt = torch.optim.Adam([self.w], lr=config.lr)

    def optimizer_parameters(self) -> list[nn.Parameter]:
        """None: the weights have their own optimizer."""
        return []

    def combine(self, losses: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """Weighted sum; also computes the weights' GradNorm gradient for `after_step`."""
        detached = losses.detach()
        if torch.isnan(self.initial).any():
            self.initial.copy_(torch.where(detached > 0, detached, torch.ones_like(detached)))
        feats = [f for f in ctx.features if f.requires_grad]
        w = self.w.detach()
        if feats and len(self.tasks) > 1:
            norms = []
            for k in range(len(self.tasks)):
                grads = torch.autograd.grad(losses[k], feats, retain_graph=True, allow_unused=True)
                sq = sum((g.pow(2).sum() for g in grads if g is not None), torch.zeros(()))
                norms.append(torch.sqrt(sq.to(detached.device)))
            g = torch.stack(norms)
            ratio = detached / self.initial
            target = (w * g).mean() * (ratio / ratio.mean()).pow(self.alpha)
            self.w.grad = torch.sign(w * g - target) * g
        return (w * losses).sum(), w.clone()

    def after_step(self, recompute: Callable[[], Tensor] | None = None) -> None:
        """Step the weights; keep them positive, summing to K."""
        if self.w.grad is None:
            return
        self._opt.step()
        self._opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.w.clamp_(min=1e-3)
            self.w.mul_(len(self.tasks) / self.w.sum())
