"""`model:` and `train:` — the multi-task network and how it is trained.

Method configs (fusion, sharing, backbone, weighting, freezing, sampling) are the families'
unions in `multitune.config.methods`: each is ``{name: <method>, ...}`` with the method's own
typed options.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, get_args

from pydantic import Field, field_validator

from multitune.config._base import StrictModel
from multitune.config.methods.backbone import BackboneMethod, FrozenConfig
from multitune.config.methods.freezing import FreezingMethod, NoneConfig
from multitune.config.methods.fusion import ConcatConfig, FusionMethod
from multitune.config.methods.sampling import ProportionalConfig, SamplingMethod
from multitune.config.methods.sharing import HardConfig, SharingMethod
from multitune.config.methods.weighting import StaticConfig, WeightingMethod


def _default_name(default: str) -> Any:
    """A before-validator: a method mapping without `name` means the default method."""

    def fill(cls: type, value: Any) -> Any:
        if isinstance(value, dict) and "name" not in value:
            return {"name": default, **value}
        return value

    return classmethod(fill)


class ProjectionConfig(StrictModel):
    """The per-modality encoder: an MLP projecting each modality's vectors to `hidden`."""

    hidden: int = Field(default=256, ge=1, description="Output width of every modality encoder.")
    layers: int = Field(
        default=1,
        ge=0,
        le=4,
        description="Linear+GELU+Dropout blocks; 0: one linear map (with concat fusion and "
        "an empty trunk, a linear model).",
    )
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description="Dropout after each block.")


class ModelConfig(StrictModel):
    """The network: encoders, fusion, sharing, heads."""

    encoder: ProjectionConfig = Field(
        default_factory=ProjectionConfig, description="Per-modality projection MLP."
    )
    fusion: FusionMethod = Field(  # type: ignore[valid-type]
        default_factory=ConcatConfig,
        description="How modality encodings become one vector: {name: concat|mean|attention|"
        "gated|film|hierarchical, modality_dropout: p, ...}.",
    )
    sharing: SharingMethod = Field(  # type: ignore[valid-type]
        default_factory=HardConfig,
        description="How tasks share the trunk: {name: hard|mmoe|cgc, hidden: [...], ...}.",
    )
    standardize: bool = Field(
        default=True,
        description="Standardize each vector modality's input with the mean and standard "
        "deviation of its train rows, inside the network (saved with it, applied to raw input "
        "when served); a constant feature is centred only. false: the raw vectors, as the "
        "embed stage wrote them.",
    )
    backbone: BackboneMethod = Field(
        default_factory=FrozenConfig,
        description="The text encoder: {name: frozen} (pooled vectors) or {name: top_k, "
        "layers: k, unfreeze_after: n} (fine-tune its top k layers from cached token states).",
    )

    _fusion_name = field_validator("fusion", mode="before")(_default_name("concat"))
    _sharing_name = field_validator("sharing", mode="before")(_default_name("hard"))
    _backbone_name = field_validator("backbone", mode="before")(_default_name("frozen"))


ClassWeighting = Literal["none", "balanced"]
"""How one task's classes are weighted in its loss."""

WEIGHTED_TASK_TYPES = ("classification", "binary")
"""Task types `train.class_weighting` applies to."""


class TrainConfig(StrictModel):
    """The training loop."""

    epochs: int = Field(
        default=200,
        ge=1,
        le=100_000,
        description="Cap on epochs, a safety net: a run stops when validation stops improving "
        "(`patience`). A run that reaches the cap while still improving is marked not "
        "converged.",
    )
    epoch_steps: int | None = Field(
        default=100,
        ge=1,
        description="Optimizer steps per epoch (one validation pass after each). A fixed "
        "count, so a task with few rows gets as many updates per epoch as one with many; "
        "null: one pass over the run's labelled train rows.",
    )
    batch_size: int = Field(default=64, ge=1, description="Rows per optimisation step.")
    seed: int = Field(default=0, ge=0, description="Seed of initialisation, order and dropout.")
    lr: float = Field(default=1e-3, gt=0.0, le=1.0, description="AdamW learning rate.")
    weight_decay: float = Field(default=0.01, ge=0.0, description="AdamW weight decay.")
    grad_clip: float | None = Field(
        default=1.0, gt=0.0, description="Max global gradient norm; null disables clipping."
    )
    patience: int = Field(
        default=8,
        ge=1,
        description="Stop after this many epochs without a better validation objective.",
    )
    schedule: Literal["constant", "cosine"] = Field(
        default="constant",
        description="Learning-rate schedule: constant, or cosine decay to 0 over the capped "
        "steps (`epochs` x steps per epoch).",
    )
    warmup: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Fraction of steps with linear LR warm-up."
    )
    class_weighting: ClassWeighting | dict[str, ClassWeighting] = Field(
        default="none",
        description="Loss weighting of classes for the classification and binary tasks that "
        "set none themselves: balanced = inverse train frequency (class_weights / pos_weight "
        "'balanced'). One value for every such task, or per task: {task: none|balanced} "
        "(tasks left out: none). Searchable: it matters for macro-F1 on skewed classes.",
    )
    eval_batch_size: int = Field(default=4096, ge=1, description="Rows per evaluation chunk.")
    weighting: WeightingMethod = Field(  # type: ignore[valid-type]
        default_factory=StaticConfig,
        description="How per-task losses/gradients become one update: {name: static|"
        "uncertainty|dwa|gradnorm|rlw|famo|pcgrad|mgda|cagrad|nash_mtl|upgrad|imtl_g|"
        "aligned_mtl, ...}.",
    )
    freezing: FreezingMethod = Field(  # type: ignore[valid-type]
        default_factory=NoneConfig,
        description="Which parameters train when: {name: none|frozen_trunk|warm_start|"
        "frozen_heads, lr_multipliers: {...}}.",
    )
    sampling: SamplingMethod = Field(  # type: ignore[valid-type]
        default_factory=ProportionalConfig,
        description="How batches are drawn over partially labelled tasks: {name: uniform|"
        "proportional|temperature|sqrt|annealed, ...}.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto = CUDA when available, else CPU."
    )

    KEY_HINTS: ClassVar[dict[str, str]] = {
        "standardize": "it is model.standardize (true or false)",
        "class_weights": "set train.class_weighting (none | balanced, or {task: none|balanced}), "
        "or class_weights on a classification task in tasks",
    }

    _weighting_name = field_validator("weighting", mode="before")(_default_name("static"))
    _freezing_name = field_validator("freezing", mode="before")(_default_name("none"))
    _sampling_name = field_validator("sampling", mode="before")(_default_name("proportional"))

    @field_validator("class_weighting", mode="before")
    @classmethod
    def _one_line_class_weighting(cls, value: Any) -> Any:
        # One message instead of one per member of the union.
        options = get_args(ClassWeighting)
        if isinstance(value, dict):
            for task, setting in value.items():
                if setting not in options:
                    raise ValueError(f"task '{task}': expected none or balanced (got {setting!r})")
        elif value not in options:
            raise ValueError(
                "expected none or balanced (every classification and binary task), or per "
                "task {task: none|balanced}"
            )
        return value

    def class_weighting_of(self, task: str) -> ClassWeighting:
        """`class_weighting` for one task (``none`` for a task a mapping leaves out)."""
        if isinstance(self.class_weighting, dict):
            return self.class_weighting.get(task, "none")
        return self.class_weighting

    def check_class_weighting(self, task_types: Mapping[str, str]) -> None:
        """Every task a per-task `class_weighting` names is a classification or binary task.

        Args:
            task_types: The tasks' types by name (`params.tasks`).

        Raises:
            ValueError: one line naming the task and the valid names.
        """
        check_class_weighting_tasks(self.class_weighting, task_types)


def check_class_weighting_tasks(
    setting: Any, task_types: Mapping[str, str], where: str = "train.class_weighting"
) -> None:
    """Every task a per-task class weighting (`{task: none|balanced}`) names is a
    classification or binary task; one value for every task needs no check.

    Args:
        setting: A `class_weighting` value: one for every task, or a mapping by task.
        task_types: The tasks' types by name (`params.tasks`).
        where: The params key the setting comes from, for the message.

    Raises:
        ValueError: one line naming the key, the task and the valid names.
    """
    if not isinstance(setting, Mapping):
        return
    valid = [t for t, kind in task_types.items() if kind in WEIGHTED_TASK_TYPES]
    for task in setting:
        if task in valid:
            continue
        if task in task_types:
            problem = f"'{task}' is a {task_types[task]} task, which has no classes to weigh"
        else:
            close = difflib.get_close_matches(str(task), list(task_types), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problem = f"'{task}' is not a task{hint}"
        raise ValueError(
            f"{where}: {problem}; per-task class weighting takes "
            f"{', '.join(valid) or 'no task here (no classification or binary task)'}"
        )
