"""`train.freezing`: the settings of each freezing policy, `{name: <policy>, ...}`.

One config class per policy, on `FreezingConfig` (the options every policy has); the policies
are in `multitune.training.freezing`, one module each, registered against these classes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from multitune.registry import MethodConfig, method_union

Component = Literal["backbone", "encoders", "fusion", "sharing", "heads"]


class FreezingConfig(MethodConfig):
    """Options every freezing policy has."""

    lr_multipliers: dict[Component, float] = Field(
        default_factory=dict,
        description="Component (backbone, encoders, fusion, sharing, heads) -> factor on "
        "train.lr; "
        "unlisted components use 1.",
    )

    @field_validator("lr_multipliers")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: m for k, m in v.items() if m < 0}
        if bad:
            raise ValueError(f"lr_multipliers must be >= 0, got {bad}")
        return v


class FrozenHeadsConfig(FreezingConfig):
    """Named task heads do not train."""

    name: Literal["frozen_heads"] = "frozen_heads"
    heads: list[str] = Field(min_length=1, description="Names of the tasks whose head is frozen.")


class FrozenTrunkConfig(FreezingConfig):
    """Heads only."""

    name: Literal["frozen_trunk"] = "frozen_trunk"


class NoneConfig(FreezingConfig):
    """All parameters train."""

    name: Literal["none"] = "none"


class WarmStartConfig(FreezingConfig):
    """Load encoders+trunk from a saved model; freeze them (for a while)."""

    name: Literal["warm_start"] = "warm_start"
    path: str | None = Field(
        default=None,
        description="Directory of a saved model (`TrainResult.save`); null: the baselines "
        "stage's model of `task`.",
    )
    task: str | None = Field(
        default=None,
        description="Warm start from this task's tuned single-task model (saved by the "
        "baselines stage in results/baselines/models/<task>); null in sweep.space: the task "
        "with the most labelled train rows.",
    )
    unfreeze_after: int | None = Field(
        default=None,
        ge=0,
        description="Epochs the loaded weights stay frozen; null = the whole run, 0 = never.",
    )


FreezingMethod = method_union(
    FrozenHeadsConfig,
    FrozenTrunkConfig,
    NoneConfig,
    WarmStartConfig,
)
"""Which parameters train when. The order is the one in which a
wrong name's message lists the valid names."""
