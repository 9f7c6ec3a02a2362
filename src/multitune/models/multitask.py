"""The multi-task network: modality encoders -> fusion -> sharing -> one head per task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from torch import Tensor, nn

from multitune.models.encoders import ModalityEncoder
from multitune.models.fusion import FUSIONS
from multitune.models.heads import TaskHead, TaskSpec, build_head
from multitune.models.sharing import SHARINGS

if TYPE_CHECKING:
    from multitune.config.model import ModelConfig

COMPONENTS = ("encoders", "fusion", "sharing", "heads")


@dataclass
class ModelOutput:
    """Raw head outputs per task, and the last shared tensors (for gradient aggregators)."""

    outputs: dict[str, Tensor]
    features: list[Tensor]


class MultiTaskModel(nn.Module):
    """modality vectors -> per-modality encoder -> fusion -> sharing -> task heads.

    Args:
        config: the `model:` section.
        modality_dims: input width of each modality, in a fixed order.
        tasks: the tasks, each with its resolved classes.
    """

    def __init__(
        self, config: ModelConfig, modality_dims: dict[str, int], tasks: list[TaskSpec]
    ) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("a model needs at least one task")
        self.config = config
        self.modality_dims = dict(modality_dims)
        self.task_specs = list(tasks)
        enc = config.encoder
        self.encoders = nn.ModuleDict(
            {
                m: ModalityEncoder(d, enc.hidden, enc.layers, enc.dropout)
                for m, d in modality_dims.items()
            }
        )
        self.fusion = FUSIONS.build(config.fusion, list(modality_dims), enc.hidden)
        names = [t.name for t in tasks]
        self.sharing = SHARINGS.build(config.sharing, self.fusion.out_dim, names)
        self.heads = nn.ModuleDict({t.name: build_head(t, self.sharing.out_dim) for t in tasks})

    @property
    def task_names(self) -> list[str]:
        """Task names, in head order."""
        return [t.name for t in self.task_specs]

    def head(self, task: str) -> TaskHead:
        """The head of `task`."""
        return cast(TaskHead, self.heads[task])

    def forward_all(self, features: dict[str, Tensor]) -> ModelOutput:
        """Raw outputs of every head plus the shared features."""
        encoded = {m: self.encoders[m](features[m]) for m in self.modality_dims}
        shared = self.sharing(self.fusion(encoded))
        outputs = {t: self.heads[t](shared.per_task[t]) for t in self.task_names}
        return ModelOutput(outputs, shared.features)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """Raw outputs (logits, standardized values) of every head."""
        return self.forward_all(features).outputs

    def component_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by component: encoders, fusion, sharing, heads."""
        return {c: list(getattr(self, c).parameters()) for c in COMPONENTS}

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Parameters only `task` uses: its head and its part of the sharing module."""
        return [*self.heads[task].parameters(), *self.sharing.task_parameters(task)]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task uses: encoders, fusion, shared part of the sharing module."""
        specific = {id(p) for t in self.task_names for p in self.task_parameters(t)}
        return [p for p in self.parameters() if id(p) not in specific]
