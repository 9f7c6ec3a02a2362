"""The multi-task network: modality encoders -> fusion -> sharing -> one head per task."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from torch import Tensor, nn

from multitune.config.methods.backbone import TopKConfig
from multitune.config.model import ModelConfig
from multitune.models.backbone import TextLayers, TokenInput, TokenStates
from multitune.models.encoders import ModalityEncoder
from multitune.models.fusion import FUSIONS
from multitune.models.heads import TaskHead, TaskSpec, build_head
from multitune.models.sharing import SHARINGS
from multitune.models.standardize import Standardize

COMPONENTS = ("backbone", "encoders", "fusion", "sharing", "heads")


@dataclass
class ModelOutput:
    """Raw head outputs per task, and the last shared tensors (for gradient aggregators)."""

    outputs: dict[str, Tensor]
    features: list[Tensor]


class MultiTaskModel(nn.Module):
    """modality vectors -> per-modality encoder -> fusion -> sharing -> task heads.

    With `config.standardize`, each vector modality is first standardized with statistics
    of the train rows (`fit_inputs`). With `config.backbone` `top_k`, a text modality's input
    is its cached token states, run through the top transformer layers (`backbone`) before
    its encoder. Token tasks read the token states those layers give, not the trunk; where no
    layer trains, those are the final token states the embed stage cached (`TextLayers.run`).

    Args:
        config: the `model:` section.
        modality_dims: input width of each modality, in a fixed order.
        tasks: the tasks, each with its resolved classes.
        token_caches: modality -> description of its cached token states (the embed stage's
            `cache.json`); needed for a `top_k` backbone and for token tasks.
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
        caches = dict(token_caches or {})
        self.token_tasks = {t.name: _token_modality(t, caches) for t in tasks if _reads_tokens(t)}
        self.backbone = _backbone(
            config, caches, list(modality_dims), set(self.token_tasks.values())
        )
        self.token_caches = {m: caches[m] for m in self.backbone}
        # Vector inputs are standardized inside the network (a fine-tuned backbone's pooled
        # output changes as it trains, so token-state modalities are not).
        self.standardize = nn.ModuleDict(
            {
                m: Standardize(d)
                for m, d in modality_dims.items()
                if config.standardize and m not in self.backbone
            }
        )
        enc = config.encoder
        self.encoders = nn.ModuleDict(
            {
                m: ModalityEncoder(d, enc.hidden, enc.layers, enc.dropout)
                for m, d in modality_dims.items()
            }
        )
        self.fusion = FUSIONS.build(config.fusion, list(modality_dims), enc.hidden)
        # Token tasks read the backbone's token states; the trunk serves the other tasks.
        self.trunk_tasks = [t.name for t in tasks if t.name not in self.token_tasks]
        names = self.trunk_tasks or [t.name for t in tasks]
        self.sharing = SHARINGS.build(config.sharing, self.fusion.out_dim, names)
        self.heads = nn.ModuleDict(
            {
                t.name: build_head(
                    t,
                    cast(TextLayers, self.backbone[self.token_tasks[t.name]]).out_dim
                    if t.name in self.token_tasks
                    else self.sharing.out_dim,
                )
                for t in tasks
            }
        )

    def fit_inputs(self, features: Mapping[str, Tensor], train: Tensor) -> None:
        """Fit each standardized modality's statistics on the `train` rows of `features`."""
        for m, scaler in self.standardize.items():
            cast(Standardize, scaler).fit(features[m], train)

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
        encoded: dict[str, Tensor] = {}
        tokens: dict[str, TokenStates] = {}
        for m in self.modality_dims:
            x = features[m]
            if m in self.backbone:
                layers = cast(TextLayers, self.backbone[m])
                tokens[m], x = layers.run(cast(TokenInput, x))
            elif m in self.standardize:
                x = self.standardize[m](x)
            if self.trunk_tasks:  # else nothing reads the encodings
                encoded[m] = self.encoders[m](x)
        outputs: dict[str, Tensor] = {}
        shared_features: list[Tensor] = []
        if self.trunk_tasks:
            shared = self.sharing(self.fusion(encoded))
            outputs = {t: self.heads[t](shared.per_task[t]) for t in self.trunk_tasks}
            shared_features = shared.features
        for t, m in self.token_tasks.items():
            outputs[t] = tokens[m].apply(self.heads[t])
        return ModelOutput({t: outputs[t] for t in self.task_names}, shared_features)

    def forward(self, features: Mapping[str, Tensor | TokenInput]) -> dict[str, Tensor]:
        """Raw outputs (logits, standardized values) of every head."""
        return self.forward_all(features).outputs

    def component_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by component: backbone, encoders, fusion, sharing, heads."""
        return {c: list(getattr(self, c).parameters()) for c in COMPONENTS}

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Parameters only `task` uses: its head and its part of the sharing module."""
        own = self.sharing.task_parameters(task) if task in self.trunk_tasks else []
        return [*self.heads[task].parameters(), *own]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task uses: encoders, fusion, shared part of the sharing module."""
        specific = {id(p) for t in self.task_names for p in self.task_parameters(t)}
        return [p for p in self.parameters() if id(p) not in specific]


def _reads_tokens(task: TaskSpec) -> bool:
    return task.type == "token_classification"


def _token_modality(task: TaskSpec, caches: dict[str, dict[str, Any]]) -> str:
    """The modality a token task reads (named, or the only one with cached token states)."""
    named = getattr(task.config, "modality", None)
    if named is not None and named in caches:
        return str(named)
    if named is None and len(caches) == 1:
        return next(iter(caches))
    raise ValueError(
        f"token task {task.name!r} needs the cached token states of "
        f"{repr(named) if named else 'one text modality'} (encoder.cache_top_layers); "
        f"cached: {', '.join(caches) or 'none'}"
    )


def _backbone(
    config: ModelConfig,
    caches: dict[str, dict[str, Any]],
    modalities: list[str],
    token_task_modalities: set[str],
) -> nn.ModuleDict:
    """Text layers per fine-tuned modality (`top_k`), and frozen ones (0 trained layers) for
    the modalities token tasks read; none when the backbone is frozen and no task reads
    tokens."""
    cfg = config.backbone
    if not isinstance(cfg, TopKConfig):
        return nn.ModuleDict({m: TextLayers(caches[m], 0) for m in sorted(token_task_modalities)})
    chosen = cfg.modalities or [m for m in modalities if m in caches]
    missing = [m for m in chosen if m not in caches]
    if missing or not chosen:
        which = ", ".join(missing) or "any modality"
        raise ValueError(
            f"model.backbone is top_k, but {which} has no cached token states: set "
            "data.modalities.<name>.encoder.cache_top_layers (sentence_transformer) and rerun "
            "`dvc repro embed`"
        )
    layers = {m: TextLayers(caches[m], cfg.layers) for m in chosen}
    layers |= {m: TextLayers(caches[m], 0) for m in token_task_modalities - set(chosen)}
    return nn.ModuleDict(layers)
