"""Frozen trunk: encoders, fusion and sharing stay at their initial (or loaded) weights; only the
task heads train (linear probing on a shared representation, e.g. Kumar et al., 2022,
"Fine-Tuning can Distort Pretrained Features", sec. 2)."""

from __future__ import annotations

from typing import Literal

from multitune.models.multitask import MultiTaskModel
from multitune.training.freezing.base import (
    FREEZINGS,
    FreezingConfig,
    FreezingPolicy,
    names_under,
)


class FrozenTrunkConfig(FreezingConfig):
    """Heads only."""

    name: Literal["frozen_trunk"] = "frozen_trunk"


@FREEZINGS.register(FrozenTrunkConfig)
class FrozenTrunk(FreezingPolicy):
    """Freezes everything but ``heads``."""

    def frozen(self, model: MultiTaskModel, epoch: int) -> set[str]:
        """Backbone, encoders, fusion and sharing."""
        return names_under(model, "backbone", "encoders", "fusion", "sharing")
