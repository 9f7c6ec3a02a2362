"""Multi-gate Mixture-of-Experts (Ma et al., 2018, "Modeling Task Relationships in Multi-task
Learning with Multi-gate Mixture-of-Experts", KDD; eq. 5-6).

``f_k(x) = sum_e g_k(x)_e * expert_e(x)`` with ``g_k(x) = softmax(W_k x)``: the experts are
shared, each task has its own gate.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multitune.config.methods.sharing import MmoeConfig
from multitune.models.encoders import mlp
from multitune.models.sharing.base import SHARINGS, SharedOutput, Sharing


@SHARINGS.register(MmoeConfig)
class MmoeSharing(Sharing):
    """Shared experts, a gate per task."""

    def __init__(self, config: MmoeConfig, in_dim: int, tasks: list[str]) -> None:
        super().__init__(config, in_dim, tasks)
        nets = [mlp(in_dim, config.hidden, config.dropout) for _ in range(config.experts)]
        self.experts = nn.ModuleList(net for net, _ in nets)
        self.out_dim = nets[0][1]
        self.gates = nn.ModuleDict({t: nn.Linear(in_dim, config.experts) for t in tasks})

    def forward(self, x: Tensor) -> SharedOutput:
        """Mix the experts per task."""
        stack = torch.stack([e(x) for e in self.experts], dim=1)  # (batch, E, out)
        per_task = {
            t: (torch.softmax(self.gates[t](x), dim=-1).unsqueeze(-1) * stack).sum(dim=1)
            for t in self.tasks
        }
        return SharedOutput(per_task, [x, stack])

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """The task's gate."""
        return list(self.gates[task].parameters())
