"""How per-task losses (or their gradients) become one update.

Two interfaces, one registry (`WEIGHTINGS`, selected by ``train.weighting.name``):

* `LossWeighting` — scalarization: ``combine(losses)`` returns one scalar loss (a weighted sum
  plus, for some methods, regularisers); its ``backward`` calls ``.backward()`` on it.
* `GradientAggregator` — gradient reshaping (PCGrad, MGDA, ...): the Jacobian of the task
  losses with respect to the shared parameters is aggregated into one gradient; task-specific
  parameters get their own task's gradient.

The trainer only calls the common `Balancer` methods. Order within one optimisation step:
``zero_grad -> losses -> balancer.backward(losses, ctx) -> clip -> optimizer.step ->
balancer.after_step(...)``; after each epoch ``balancer.epoch_end(epoch, mean_losses)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from multitune.config.methods.weighting import WeightingMethod
from multitune.registry import MethodConfig, Registry


@dataclass
class StepContext:
    """What a balancer may need besides the losses, for one optimisation step.

    Attributes:
        features: the last shared tensors of the forward pass (``ModelOutput.features``).
        shared_params: trainable parameters every task uses.
        task_params: per task (in loss order), the trainable parameters only it uses.
        epoch: the current epoch (0-based).
        total_epochs: the planned number of epochs.
    """

    features: list[Tensor]
    shared_params: list[nn.Parameter]
    task_params: list[list[nn.Parameter]]
    epoch: int = 0
    total_epochs: int = 1
    extra: dict[str, object] = field(default_factory=dict)


class Balancer(nn.Module, ABC):
    """Base of every loss-balancing method.

    Built as ``Impl(config, tasks)`` with the task names in loss order. It is an ``nn.Module``:
    its parameters (if any) are optimised by the trainer's optimizer (no weight decay) and its
    buffers are checkpointed.
    """

    needs_recompute: ClassVar[bool] = False

    def __init__(self, config: MethodConfig, tasks: list[str]) -> None:
        super().__init__()
        self.config = config
        self.tasks = list(tasks)

    @abstractmethod
    def backward(self, losses: Tensor, ctx: StepContext) -> Tensor:
        """Fill ``.grad`` of the trainable parameters from ``losses`` ``(n_tasks,)``.

        Returns the detached per-task weights used (for logging), shape ``(n_tasks,)``.
        """

    def optimizer_parameters(self) -> list[nn.Parameter]:
        """Parameters the trainer's optimizer updates (default: all of the module's).

        Methods that update their own parameters with their own rule return ``[]``.
        """
        return list(self.parameters())

    def after_step(self, recompute: Callable[[], Tensor] | None = None) -> None:
        """Called after ``optimizer.step()``; `recompute` gives the batch's new losses."""

    def epoch_end(self, epoch: int, mean_losses: Tensor) -> None:
        """Called after each epoch with the mean train loss per task ``(n_tasks,)``."""


class LossWeighting(Balancer):
    """Scalarization: the update is the gradient of ``combine(losses)``."""

    @abstractmethod
    def combine(self, losses: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """``(scalar loss to backpropagate, detached weights (n_tasks,))``."""

    def backward(self, losses: Tensor, ctx: StepContext) -> Tensor:
        """Backpropagate the combined loss."""
        total, weights = self.combine(losses, ctx)
        total.backward()
        return weights


class GradientAggregator(Balancer):
    """Gradient reshaping: an aggregator maps the Jacobian ``(n_tasks, n_shared)`` of the losses
    with respect to the shared parameters to one update direction.

    Subclasses implement `aggregate_backward`; this base handles the degenerate cases (one
    task, nothing shared left to train) by plain summation.
    """

    def backward(self, losses: Tensor, ctx: StepContext) -> Tensor:
        """Aggregate per-task gradients on shared parameters into ``.grad``."""
        features = [f for f in ctx.features if f.requires_grad]
        if len(self.tasks) == 1 or not ctx.shared_params or not features:
            losses.sum().backward()
            return torch.ones_like(losses).detach()
        return self.aggregate_backward(losses, features, ctx)

    @abstractmethod
    def aggregate_backward(
        self, losses: Tensor, features: list[Tensor], ctx: StepContext
    ) -> Tensor:
        """Backpropagate with aggregation; return the weights (or ones if not weighted)."""


WEIGHTINGS: Registry[Balancer] = Registry("weighting", WeightingMethod)
