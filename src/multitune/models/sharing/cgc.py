"""Customized Gate Control, the single-level Progressive Layered Extraction (Tang et al., 2020,
"Progressive Layered Extraction (PLE)", RecSys; eq. 1-3).

Each task mixes the shared experts and its own task-specific experts with its own softmax gate:
``f_k(x) = sum_e g_k(x)_e * [shared experts; experts of k]_e(x)``.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from multitune.config.methods.sharing import CgcConfig
from multitune.models.encoders import mlp
from multitune.models.sharing.base import SHARINGS, SharedOutput, Sharing


@SHARINGS.register(CgcConfig)
class CgcSharing(Sharing):
    """Shared and per-task experts, a gate per task."""

    def __init__(self, config: CgcConfig, in_dim: int, tasks: list[str]) -> None:
        super().__init__(config, in_dim, tasks)

        def experts(n: int) -> nn.ModuleList:
            return nn.ModuleList(mlp(in_dim, config.hidden, config.dropout)[0] for _ in range(n))

        self.shared = experts(config.shared_experts)
        self.own = nn.ModuleDict({t: experts(config.task_experts) for t in tasks})
        n_mix = config.shared_experts + config.task_experts
        self.gates = nn.ModuleDict({t: nn.Linear(in_dim, n_mix) for t in tasks})
        self.out_dim = config.hidden[-1]

    def forward(self, x: Tensor) -> SharedOutput:
        """Mix shared and own experts per task."""
        shared = torch.stack([e(x) for e in self.shared], dim=1)  # (batch, S, out)
        per_task = {}
        for t in self.tasks:
            own = torch.stack([e(x) for e in cast(nn.ModuleList, self.own[t])], dim=1)
            mix = torch.cat([shared, own], dim=1)
            gate = torch.softmax(self.gates[t](x), dim=-1).unsqueeze(-1)
            per_task[t] = (gate * mix).sum(dim=1)
        return SharedOutput(per_task, [x, shared])

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """The task's gate and experts."""
        return [*self.gates[task].parameters(), *self.own[task].parameters()]
