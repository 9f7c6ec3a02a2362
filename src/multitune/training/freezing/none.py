"""No freezing: every parameter trains in every epoch (lr multipliers still apply)."""

from __future__ import annotations

from typing import Literal

from multitune.models.multitask import MultiTaskModel
from multitune.training.freezing.base import FREEZINGS, FreezingConfig, FreezingPolicy


class NoneConfig(FreezingConfig):
    """All parameters train."""

    name: Literal["none"] = "none"


@FREEZINGS.register(NoneConfig)
class NoFreezing(FreezingPolicy):
    """Freezes nothing."""

    def frozen(self, model: MultiTaskModel, epoch: int) -> set[str]:
        """Nothing."""
        return set()
