"""The multi-task network: modality encoders -> fusion -> sharing -> one head per task."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from torch import Tensor, nn

from multitune.models.backbone import TextLayers, TokenInput, TopKConfig
from multitune.models.encoders import ModalityEncoder
from multitune.models.fusion import FUSIONS
from multitune.models.heads import TaskHead, TaskSpec, build_head
from multitune.models.sharing import SHARINGS

if TYPE_CHECKING:
    from multitune.config.model import ModelConfig

COMPONENTS = ("backbone", "encoders", "fusion", "sharing", "heads")


@dataclass
class ModelOutput:
    """Raw head outputs per task, and the last shared tensors (for gradient aggregators)."""

    outputs: dict[str, Tensor]
    features: list[Tensor]


class MultiTaskModel(nn.Module):
    """modality vectors -> per-modality encoder -> fusion -> sharing -> task heads.

    With `config.backbone` `top_k`, a text modality's input is its cached token states, run
    through the top transformer layers (`backbone`) before its encoder.

    Args:
        config: the `model:` section.
        modality_dims: input width of each modality, in a fixed order.
        tasks: the tasks, each with its resolved classes.
        token_caches: modality -> description of its cached token states (the embed stage's
            `cache.json`); needed only for a `top_k` backbone.
    """

    def __init__(
        self,
        config: ModelConfig,
        modality_dims: dict[str, int],
        tasks: list[TaskSpec],
        token_caches: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("a model needs at least one task")
        self.config = config
        self.modality_dims = dict(modality_dims)
        self.task_specs = list(tasks)
        self.backbone = _backbone(config, dict(token_caches or {}), list(modality_dims))
        self.token_caches = {m: dict(token_caches or {})[m] for m in self.backbone}
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

    @property
    def token_modalities(self) -> list[str]:
        """Modalities whose input is token states (`TokenInput`), not vectors."""
        return list(self.backbone)

    def frozen_names(self, epoch: int) -> set[str]:
        """Parameters the backbone keeps frozen in `epoch`: the layers below its trained top
        always; the top ones too until `unfreeze_after` epochs have passed."""
        cfg = self.config.backbone
        wait = isinstance(cfg, TopKConfig) and epoch < cfg.unfreeze_after
        names: set[str] = set()
        for m, layers in self.backbone.items():
            names |= cast(TextLayers, layers).frozen_names(f"backbone.{m}.")
            if wait:
                names |= {f"backbone.{m}.{n}" for n, _ in layers.named_parameters()}
        return names

    def forward_all(self, features: Mapping[str, Tensor | TokenInput]) -> ModelOutput:
        """Raw outputs of every head plus the shared features."""
        encoded = {}
        for m in self.modality_dims:
            x = features[m]
            if m in self.backbone:
                x = self.backbone[m](*cast(TokenInput, x).padded())
            encoded[m] = self.encoders[m](x)
        shared = self.sharing(self.fusion(encoded))
        outputs = {t: self.heads[t](shared.per_task[t]) for t in self.task_names}
        return ModelOutput(outputs, shared.features)

    def forward(self, features: Mapping[str, Tensor | TokenInput]) -> dict[str, Tensor]:
        """Raw outputs (logits, standardized values) of every head."""
        return self.forward_all(features).outputs

    def component_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by component: backbone, encoders, fusion, sharing, heads."""
        return {c: list(getattr(self, c).parameters()) for c in COMPONENTS}

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Parameters only `task` uses: its head and its part of the sharing module."""
        return [*self.heads[task].parameters(), *self.sharing.task_parameters(task)]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task uses: encoders, fusion, shared part of the sharing module."""
        specific = {id(p) for t in self.task_names for p in self.task_parameters(t)}
        return [p for p in self.parameters() if id(p) not in specific]


def _backbone(
    config: ModelConfig, caches: dict[str, dict[str, Any]], modalities: list[str]
) -> nn.ModuleDict:
    """The `top_k` text layers per fine-tuned modality (none when the backbone is frozen)."""
    cfg = config.backbone
    if not isinstance(cfg, TopKConfig):
        return nn.ModuleDict()
    chosen = cfg.modalities or [m for m in modalities if m in caches]
    missing = [m for m in chosen if m not in caches]
    if missing or not chosen:
        which = ", ".join(missing) or "any modality"
        raise ValueError(
            f"model.backbone is top_k, but {which} has no cached token states: set "
            "data.modalities.<name>.encoder.cache_top_layers (sentence_transformer) and rerun "
            "`dvc repro embed`"
        )
    return nn.ModuleDict({m: TextLayers(caches[m], cfg.layers) for m in chosen})
