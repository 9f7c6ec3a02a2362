"""Warm start: backbone (fine-tuned text layers), encoders, fusion and sharing weights come
from a saved (single-task) model, then stay frozen, or unfreeze after N epochs (gradual
unfreezing in the spirit of Howard & Ruder, 2018, "Universal Language Model Fine-tuning",
sec. 3.3).

Parameters are copied by name where the shapes agree (task-specific parts such as another
task's gate are skipped); only the copied parameters are frozen.

The saved model is `path`, or with `task` the tuned single-task model of that task which the
baselines stage saves (`results/baselines/models/<task>`, see `multitune.tuning.warm`). A
sweep fills in both, and gives the trial the saved model's encoders, fusion and trunk, so
that every shared weight has a place to go.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from multitune.config.methods.freezing import WarmStartConfig
from multitune.models.multitask import MultiTaskModel
from multitune.training.freezing.base import FREEZINGS, FreezingPolicy

_SHARED = ("backbone.", "encoders.", "fusion.", "sharing.")

BASELINE_MODELS = "results/baselines/models"
"""Where the baselines stage saves the tuned single-task models a warm start reads."""


@FREEZINGS.register(WarmStartConfig)
class WarmStart(FreezingPolicy):
    """Copies the saved shared weights in `setup`; freezes them until `unfreeze_after`."""

    def __init__(self, config: WarmStartConfig, tasks: list[str]) -> None:
        super().__init__(config, tasks)
        self.path = Path(config.path) if config.path else None
        if self.path is None and config.task:
            self.path = Path(BASELINE_MODELS) / config.task
        self.unfreeze_after = config.unfreeze_after
        self.loaded: set[str] = set()

    def setup(self, model: MultiTaskModel) -> None:
        """Copy matching encoder/fusion/sharing tensors from the saved model."""
        if self.path is None:
            raise ValueError(
                "train.freezing: warm_start needs a path (a saved model) or a task (its tuned "
                "single-task model from the baselines stage)"
            )
        weights = self.path / "model.safetensors"
        if not weights.is_file():
            raise ValueError(f"train.freezing.path: no saved model at {weights}")
        saved = load_file(str(weights))
        own = model.state_dict()
        params = dict(model.named_parameters())
        copied = {
            k: v
            for k, v in saved.items()
            if k.startswith(_SHARED) and k in own and own[k].shape == v.shape
        }
        if not any(k in params for k in copied):
            raise ValueError(
                f"train.freezing.path: {self.path} shares no encoder/trunk weights with this "
                "model (different model config?)"
            )
        model.load_state_dict({**own, **copied})
        self.loaded = {k for k in copied if k in params}

    def frozen(self, model: MultiTaskModel, epoch: int) -> set[str]:
        """The loaded parameters, until `unfreeze_after` epochs have passed."""
        if self.unfreeze_after is not None and epoch >= self.unfreeze_after:
            return set()
        return set(self.loaded)
