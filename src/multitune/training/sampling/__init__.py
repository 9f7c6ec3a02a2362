"""Task samplers for partially labelled data: one module each, registered in `SAMPLERS`."""

from __future__ import annotations

from multitune.training.sampling import (  # noqa: F401 - registers the methods
    annealed,
    proportional,
    sqrt,
    temperature,
    uniform,
)
from multitune.training.sampling.base import SAMPLERS, TaskSampler

__all__ = ["SAMPLERS", "TaskSampler"]
