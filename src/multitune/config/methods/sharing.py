"""`model.sharing`: the settings of each sharing architecture, `{name: <sharing>, ...}`.

One config class per architecture, on `SharingConfig` (the options every one has); the
architectures are in `multitune.models.sharing`, one module each, registered against these
classes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from multitune.registry import MethodConfig, method_union


class SharingConfig(MethodConfig):
    """Options every sharing architecture has."""

    hidden: list[int] = Field(
        default_factory=lambda: [256, 128],
        description="Widths of the trunk MLP (of each expert, for expert-based sharing); "
        "[]: no trunk layer, the heads read the fused encodings.",
    )
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description="Dropout after each layer.")


class CgcConfig(SharingConfig):
    """Shared plus task-specific experts, a gate per task (PLE's CGC)."""

    name: Literal["cgc"] = "cgc"
    shared_experts: int = Field(default=2, ge=1, description="Experts shared by all tasks.")
    task_experts: int = Field(default=1, ge=1, description="Experts owned by each task.")


class HardConfig(SharingConfig):
    """One shared trunk MLP; each head reads its output."""

    name: Literal["hard"] = "hard"


class MmoeConfig(SharingConfig):
    """Shared experts mixed by one softmax gate per task."""

    name: Literal["mmoe"] = "mmoe"
    experts: int = Field(default=4, ge=1, description="Number of shared experts.")


SharingMethod = method_union(
    CgcConfig,
    HardConfig,
    MmoeConfig,
)
"""How the tasks share the trunk. The order is the one in which a wrong name's message lists
the valid names."""
