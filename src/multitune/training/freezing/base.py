"""Freezing policies: which parameters train in each epoch, and at what learning rate."""

from __future__ import annotations

from abc import ABC, abstractmethod

from multitune.config.methods.freezing import FreezingConfig, FreezingMethod
from multitune.models.multitask import MultiTaskModel
from multitune.registry import Registry


class FreezingPolicy(ABC):
    """Decides, per epoch, which parameters of a `MultiTaskModel` are frozen.

    Contract:
      * built as ``Impl(config, tasks)``; bad settings raise ``ValueError`` naming the key;
      * ``setup(model)`` is called once before training (checks names, loads warm-start
        weights);
      * ``frozen(model, epoch)`` returns the names (as in ``model.named_parameters()``) of
        the parameters that do not train in `epoch` (0-based); the trainer applies it at the
        start of every epoch via ``apply``. Frozen parameters get no gradient and AdamW
        leaves them (and their weight decay) untouched;
      * ``lr_multiplier(component)`` scales ``train.lr`` for that component's param group.
    """

    def __init__(self, config: FreezingConfig, tasks: list[str]) -> None:
        self.config = config
        self.tasks = list(tasks)

    def setup(self, model: MultiTaskModel) -> None:  # noqa: B027 - optional hook
        """Validate against the model; load weights if the policy warm-starts."""

    @abstractmethod
    def frozen(self, model: MultiTaskModel, epoch: int) -> set[str]:
        """Names of the parameters frozen in `epoch`."""

    def apply(self, model: MultiTaskModel, epoch: int) -> set[str]:
        """Set ``requires_grad`` for `epoch`; returns the frozen names (the policy's, and
        those the model's backbone keeps frozen)."""
        frozen = self.frozen(model, epoch) | model.frozen_names(epoch)
        for name, p in model.named_parameters():
            p.requires_grad_(name not in frozen)
        return frozen

    def lr_multiplier(self, component: str) -> float:
        """Factor on ``train.lr`` for `component`."""
        return float(self.config.lr_multipliers.get(component, 1.0))  # type: ignore[call-overload]


def names_under(model: MultiTaskModel, *prefixes: str) -> set[str]:
    """Parameter names under the given module prefixes (e.g. ``"encoders"``, ``"heads.a"``)."""
    return {n for n, _ in model.named_parameters() if any(n.startswith(p + ".") for p in prefixes)}


FREEZINGS: Registry[FreezingPolicy] = Registry("freezing", FreezingMethod)
