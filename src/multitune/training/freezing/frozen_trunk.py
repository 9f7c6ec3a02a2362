"""Frozen trunk: encoders, fusion and sharing stay at their initial (or loaded) weights; only the
task heads train (linear probing on a shared representation, e.g. Kumar et al., 2022,
"Fine-Tuning can Distort Pretrained Features", sec. 2)."""

from __future__ import annotations

from multitune.config.methods.freezing import FrozenTrunkConfig
from multitune.models.multitask import MultiTaskModel
from multitune.training.freezing.base import (
    FREEZINGS,
    FreezingPolicy,
    names_under,
)


@FREEZINGS.register(FrozenTrunkConfig)
class FrozenTrunk(FreezingPolicy):
    """Freezes everything but ``heads``."""

    def frozen(self, model: MultiTaskModel, epoch: int) -> set[str]:
        """Backbone, encoders, fusion and sharing."""
        return names_under(model, "backbone", "encoders", "fusion", "sharing")
