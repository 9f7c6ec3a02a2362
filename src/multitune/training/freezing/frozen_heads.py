"""Frozen heads: the named task heads keep their weights while the rest trains, e.g. to keep an
old task's head while a new task learns (the "feature extraction" side of Li & Hoiem, 2017,
"Learning without Forgetting", sec. 3)."""

from __future__ import annotations

from multitune.config.methods.freezing import FrozenHeadsConfig
from multitune.models.multitask import MultiTaskModel
from multitune.training.freezing.base import (
    FREEZINGS,
    FreezingPolicy,
    names_under,
)


@FREEZINGS.register(FrozenHeadsConfig)
class FrozenHeads(FreezingPolicy):
    """Freezes ``heads.<task>`` for the named tasks."""

    def __init__(self, config: FrozenHeadsConfig, tasks: list[str]) -> None:
        super().__init__(config, tasks)
        unknown = [h for h in config.heads if h not in tasks]
        if unknown:
            raise ValueError(
                f"train.freezing.heads names unknown task head(s) {', '.join(unknown)}; "
                f"tasks: {', '.join(tasks)}"
            )
        self.heads = list(config.heads)

    def frozen(self, model: MultiTaskModel, epoch: int) -> set[str]:
        """The named heads' parameters."""
        return names_under(model, *(f"heads.{h}" for h in self.heads))
