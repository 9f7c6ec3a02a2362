"""Task heads, one module per task type, looked up in `HEADS` by the task's `type`."""

from __future__ import annotations

from multitune.models.heads import (  # noqa: F401 - registers the heads
    binary,
    classification,
    distribution,
    multilabel,
    regression,
    token_classification,
)
from multitune.models.heads.base import HEADS, TaskHead, TaskSpec, build_head, masked_mean

__all__ = ["HEADS", "TaskHead", "TaskSpec", "build_head", "masked_mean"]
