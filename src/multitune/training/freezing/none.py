"""No freezing: every parameter trains in every epoch (lr multipliers still apply)."""

from __future__ import annotations

from multitune.config.methods.freezing import NoneConfig
from multitune.models.multitask import MultiTaskModel
from multitune.training.freezing.base import FREEZINGS, FreezingPolicy


@FREEZINGS.register(NoneConfig)
class NoFreezing(FreezingPolicy):
    """Freezes nothing."""

    def frozen(self, model: MultiTaskModel, epoch: int) -> set[str]:
        """Nothing."""
        return set()
