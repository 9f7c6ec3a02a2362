"""The task-head interface: one head per task, typed by the task's type."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class TaskSpec:
    """A task as the model sees it: its config (from `tasks:`) and its resolved classes.

    Attributes:
        config: the typed task config (`multitune.config.tasks`).
        classes: the class labels in output order; None for regression.
        n_labelled: rows labelled for the task in the whole table (informational).
    """

    config: Any
    classes: list[str] | None = None
    n_labelled: int = 0

    @property
    def name(self) -> str:
        """The task's name."""
        return str(self.config.name)

    @property
    def type(self) -> str:
        """The task's type: classification, binary, multilabel, regression, distribution."""
        return str(self.config.type)

    @property
    def n_outputs(self) -> int:
        """Width of the head's raw output."""
        if self.type in ("binary", "regression"):
            return 1
        if not self.classes:
            raise ValueError(f"task {self.name!r} ({self.type}) has no classes")
        return len(self.classes)


class TaskHead(nn.Module, ABC):
    """Maps a task's representation to outputs, and owns the task's loss.

    Contract:
      * built as ``Impl(spec, in_dim)``; ``forward(z)`` maps ``(batch, in_dim)`` to raw outputs
        (logits, or a standardized value): ``(batch, C)`` or ``(batch,)``;
      * ``loss(out, target, labelled)`` is the mean over the rows the task's loss covers
        (labelled rows; all rows for a distribution task with ``missing: uniform``) — a
        scalar that is 0 (with a graph) when the batch has none; the trainer backpropagates it;
      * ``predict(out)`` gives what users see: probabilities for categorical tasks (binary:
        P(second class), shape ``(batch,)``), values in original units for regression;
      * ``fit_statistics(target, labelled)`` is called once with the train rows (class weights,
        pos_weight, target standardization); the results are buffers, so they are saved.

    Targets are encoded by `multitune.training.data` and are valid values on unlabelled rows
    too (zeros); `labelled` is the mask that counts.
    """

    reads_tokens: ClassVar[bool] = False
    """Whether the head reads token states ``(batch, T, H)`` instead of the shared trunk."""

    def __init__(self, spec: TaskSpec, in_dim: int) -> None:
        super().__init__()
        self.spec = spec
        self.linear = nn.Linear(in_dim, spec.n_outputs)

    def forward(self, z: Tensor) -> Tensor:
        """Raw outputs."""
        return self.linear(z)

    @abstractmethod
    def loss(self, out: Tensor, target: Tensor, labelled: Tensor) -> Tensor:
        """Masked mean loss of the batch."""

    @abstractmethod
    def predict(self, out: Tensor) -> Tensor:
        """Probabilities (categorical) or values in original units (regression)."""

    def fit_statistics(self, target: Tensor, labelled: Tensor) -> None:
        """Learn loss statistics from the train rows."""


def masked_mean(values: Tensor, mask: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean of per-row `values` over rows where `mask`; 0 (keeping the graph) when none."""
    w = mask.to(values.dtype) if weights is None else mask.to(values.dtype) * weights
    return (values * w).sum() / w.sum().clamp_min(torch.finfo(values.dtype).eps)


H = TypeVar("H", bound=type[TaskHead])
HEADS: dict[str, type[TaskHead]] = {}


def register_head(task_type: str) -> Callable[[H], H]:
    """Class decorator: the head implementation of one task type."""

    def decorator(cls: H) -> H:
        HEADS[task_type] = cls
        return cls

    return decorator


def build_head(spec: TaskSpec, in_dim: int) -> TaskHead:
    """The head for `spec`'s task type."""
    try:
        cls = HEADS[spec.type]
    except KeyError:
        raise ValueError(
            f"no head for task type {spec.type!r}; known: {', '.join(sorted(HEADS))}"
        ) from None
    return cls(spec, in_dim)
