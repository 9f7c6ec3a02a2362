"""`train.sampling`: the settings of each task sampler, `{name: <sampler>, ...}`.

One config class per sampler; the samplers are in `multitune.training.sampling`, one module
each, registered against these classes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from multitune.registry import MethodConfig, method_union


class AnnealedConfig(MethodConfig):
    """Proportional at first, flatter each epoch."""

    name: Literal["annealed"] = "annealed"
    decay: float = Field(
        default=0.8, ge=0.0, le=1.0, description="How far alpha falls from 1 by the last epoch."
    )


class ProportionalConfig(MethodConfig):
    """Tasks drawn in proportion to their labelled rows."""

    name: Literal["proportional"] = "proportional"


class SqrtConfig(MethodConfig):
    """Tasks drawn with ``p ∝ sqrt(n)``."""

    name: Literal["sqrt"] = "sqrt"


class TemperatureConfig(MethodConfig):
    """Tasks drawn with ``p ∝ n^(1/T)``."""

    name: Literal["temperature"] = "temperature"
    temperature: float = Field(
        default=2.0, gt=0.0, description="T > 0: 1 = proportional, larger = flatter."
    )


class UniformConfig(MethodConfig):
    """Each task equally likely per step."""

    name: Literal["uniform"] = "uniform"


SamplingMethod = method_union(
    AnnealedConfig,
    ProportionalConfig,
    SqrtConfig,
    TemperatureConfig,
    UniformConfig,
)
"""How batches are drawn over partially labelled tasks. The order is the one in which a wrong
name's message lists the valid names."""
