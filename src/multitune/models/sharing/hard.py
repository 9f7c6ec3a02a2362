"""Hard parameter sharing: one MLP trunk shared by every task (Caruana, 1997, "Multitask
Learning"; the default architecture in Ruder, 2017, "An Overview of Multi-Task Learning")."""

from __future__ import annotations

from torch import Tensor

from multitune.config.methods.sharing import HardConfig
from multitune.models.encoders import mlp
from multitune.models.sharing.base import SHARINGS, SharedOutput, Sharing


@SHARINGS.register(HardConfig)
class HardSharing(Sharing):
    """``z = MLP(x)`` for every task."""

    def __init__(self, config: HardConfig, in_dim: int, tasks: list[str]) -> None:
        super().__init__(config, in_dim, tasks)
        self.trunk, self.out_dim = mlp(in_dim, config.hidden, config.dropout)

    def forward(self, x: Tensor) -> SharedOutput:
        """The trunk's output, the same tensor for every task."""
        z = self.trunk(x)
        return SharedOutput({t: z for t in self.tasks}, [z])
