"""FAMO: Fast Adaptive Multitask Optimization (Liu et al., 2023, NeurIPS, Algorithm 1).

Task logits ``xi``, ``z = softmax(xi)``; the update minimises
``sum_k z_k log(L_k) / c`` with ``c = sum_k z_k / L_k`` (so every task's log-loss falls at
a balanced rate), and after the optimizer step ``xi`` moves along
``d softmax(xi) / d xi . (log L_k(before) - log L_k(after))`` (the decrease of each log-loss on
the same batch), with Adam and weight decay gamma. Losses are non-negative here, so the
minimum loss is taken as 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from multitune.config.methods.weighting import FamoConfig
from multitune.training.weighting.base import WEIGHTINGS, LossWeighting, StepContext

_EPS = 1e-8


@WEIGHTINGS.register(FamoConfig)
class FamoWeighting(LossWeighting):
    """``sum_k z_k log L_k / c``; logits updated after each step."""

    needs_recompute: ClassVar[bool] = True

    def __init__(self, config: FamoConfig, tasks: list[str]) -> None:
        super().__init__(config, tasks)
        self.logits = nn.Parameter(torch.zeros(len(tasks)))
        self._opt = torch.optim.Adam([self.logits], lr=config.lr, weight_decay=config.gamma)
        self._before: Tensor | None = None

    def optimizer_parameters(self) -> list[nn.Parameter]:
        """None: the logits have their own optimizer."""
        return []

    def combine(self, losses: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """FAMO's scalarised log-loss."""
        self._before = losses.detach()
        z = torch.softmax(self.logits.detach(), dim=0)
        d = losses + _EPS
        c = (z / d.detach()).sum()
        return (z * d.log() / c).sum(), (z / (d.detach() * c)).detach()

    def after_step(self, recompute: Callable[[], Tensor] | None = None) -> None:
        """Move the logits by the observed decrease of each log-loss."""
        if recompute is None or self._before is None:
            return
        after = recompute().detach()
        delta = (self._before + _EPS).log() - (after + _EPS).log()
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(
                torch.softmax(self.logits, dim=0), self.logits, grad_outputs=delta
            )
        self._opt.zero_grad(set_to_none=True)
        self.logits.grad = grad
        self._opt.step()
        self._before = None
