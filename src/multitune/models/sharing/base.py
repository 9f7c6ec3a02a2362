"""The sharing interface: how the tasks share the trunk between fusion and heads."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from torch import Tensor, nn

from multitune.config.methods.sharing import SharingConfig, SharingMethod
from multitune.registry import Registry


@dataclass
class SharedOutput:
    """What a sharing module returns.

    Attributes:
        per_task: ``{task: (batch, out_dim)}``, the representation each head reads.
        features: the last tensors computed only from shared parameters; gradient aggregators
            take the Jacobian of the task losses with respect to these
            (``torchjd.autojac.mtl_backward``'s ``features``).
    """

    per_task: dict[str, Tensor]
    features: list[Tensor]


class Sharing(nn.Module, ABC):
    """Maps the fused representation to one representation per task.

    Contract:
      * built as ``Impl(config, in_dim, tasks)``; sets ``self.out_dim``;
      * ``forward(x)`` takes ``(batch, in_dim)`` and returns a `SharedOutput` holding a
        ``(batch, out_dim)`` tensor for every task in `tasks`;
      * ``task_parameters(task)`` lists the parameters only that task uses (gates, task
        experts); every other parameter is shared by all tasks.
    """

    out_dim: int

    def __init__(self, config: SharingConfig, in_dim: int, tasks: list[str]) -> None:
        super().__init__()
        self.config = config
        self.tasks = list(tasks)

    @abstractmethod
    def forward(self, x: Tensor) -> SharedOutput:
        """Per-task representations of fused input `x`."""

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Parameters specific to `task` (none for hard sharing)."""
        return []


SHARINGS: Registry[Sharing] = Registry("sharing", SharingMethod)
