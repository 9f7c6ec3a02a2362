"""Shared machinery of the gradient aggregators built on `torchjd` (Quinton & Rey, 2024,
"Jacobian Descent for Multi-Objective Optimization").

``torchjd.autojac.mtl_backward`` gives each task-specific parameter its own task's gradient and
stores, on every shared parameter, the Jacobian of the task losses (one row per task), going
through the last shared tensors (``StepContext.features``). ``jac_to_grad`` then reduces the
Jacobian with the method's aggregator into ``.grad``.

torchjd is imported where an aggregator is built or run, not at the top of a module: it (with
the cvxpy that CAGrad and Nash-MTL need) would add to the start-up of every process that
imports the weightings, most of which run none of these methods.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor

from multitune.registry import MethodConfig
from multitune.training.weighting.base import GradientAggregator, StepContext


class TorchJDAggregator(GradientAggregator):
    """A `GradientAggregator` delegating to a ``torchjd.aggregation.Aggregator``."""

    def __init__(self, config: MethodConfig, tasks: list[str]) -> None:
        super().__init__(config, tasks)
        self.aggregator = self.make_aggregator()

    @abstractmethod
    def make_aggregator(self) -> object:
        """The torchjd aggregator of this method."""

    def aggregate_backward(
        self, losses: Tensor, features: list[Tensor], ctx: StepContext
    ) -> Tensor:
        """Jacobian descent on the shared parameters, plain gradients on the task ones."""
        from torchjd.autojac import jac_to_grad, mtl_backward  # start-up time (module doc)

        mtl_backward(
            list(losses.unbind()),
            features=features,
            tasks_params=ctx.task_params,
            shared_params=ctx.shared_params,
            retain_graph=True,  # the losses share their `torch.stack` node
        )
        weights = jac_to_grad(ctx.shared_params, self.aggregator)  # type: ignore[call-overload]
        if isinstance(weights, Tensor):
            return weights.detach()
        return torch.ones_like(losses).detach()
