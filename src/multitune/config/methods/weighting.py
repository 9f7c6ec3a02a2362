"""`train.weighting`: the settings of each loss-weighting method, `{name: <method>, ...}`.

One config class per method; the methods themselves (and their papers) are in
`multitune.training.weighting`, one module each, registered against these classes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from multitune.registry import MethodConfig, method_union


class AlignedMtlConfig(MethodConfig):
    """Gradient system aligned to a well-conditioned one."""

    name: Literal["aligned_mtl"] = "aligned_mtl"
    scale_mode: Literal["min", "median", "rmse"] = Field(
        default="min", description="Eigenvalue that sets the scale of the aligned system."
    )


class CAGradConfig(MethodConfig):
    """Worst-case improvement near the average gradient."""

    name: Literal["cagrad"] = "cagrad"
    c: float = Field(
        default=0.5, ge=0.0, description="Radius of the ball around the mean gradient."
    )


class DwaConfig(MethodConfig):
    """Weights from the rate at which each task's loss falls."""

    name: Literal["dwa"] = "dwa"
    temperature: float = Field(default=2.0, gt=0.0, description="T: larger = flatter weights.")


class FamoConfig(MethodConfig):
    """Balanced log-loss decrease with cheap logit updates."""

    name: Literal["famo"] = "famo"
    lr: float = Field(default=0.025, gt=0.0, description="Learning rate of the task logits.")
    gamma: float = Field(default=1e-3, ge=0.0, description="Weight decay of the task logits.")


class GradnormConfig(MethodConfig):
    """Weights that equalise the tasks' training rates."""

    name: Literal["gradnorm"] = "gradnorm"
    alpha: float = Field(default=1.5, ge=0.0, description="Strength of the restoring force.")
    lr: float = Field(default=0.025, gt=0.0, description="Learning rate of the weights.")


class IMTLGConfig(MethodConfig):
    """Equal projection of the update on every task gradient."""

    name: Literal["imtl_g"] = "imtl_g"


class MGDAConfig(MethodConfig):
    """Minimum-norm convex combination of task gradients."""

    name: Literal["mgda"] = "mgda"
    epsilon: float = Field(default=1e-3, gt=0.0, description="Frank-Wolfe stopping tolerance.")
    max_iters: int = Field(default=100, ge=1, description="Frank-Wolfe iterations at most.")


class NashMtlConfig(MethodConfig):
    """Nash bargaining weights over task gradients."""

    name: Literal["nash_mtl"] = "nash_mtl"
    max_norm: float = Field(default=1.0, ge=0.0, description="Max norm of the update; 0 = off.")
    update_weights_every: int = Field(default=1, ge=1, description="Steps between solves.")
    optim_niter: int = Field(default=20, ge=1, description="Iterations of the inner solver.")


class PCGradConfig(MethodConfig):
    """Project away conflicting gradient components."""

    name: Literal["pcgrad"] = "pcgrad"


class RlwConfig(MethodConfig):
    """Random weights every step."""

    name: Literal["rlw"] = "rlw"


class StaticConfig(MethodConfig):
    """Fixed per-task loss weights."""

    name: Literal["static"] = "static"
    weights: dict[str, float] = Field(
        default_factory=dict,
        description="Task name -> loss weight (>= 0); tasks not listed weigh 1.",
    )

    def for_tasks(self, tasks: list[str]) -> StaticConfig:
        """The weights of `tasks` only."""
        return self.model_copy(
            update={"weights": {t: w for t, w in self.weights.items() if t in tasks}}
        )


class UncertaintyConfig(MethodConfig):
    """Learned homoscedastic-uncertainty weights."""

    name: Literal["uncertainty"] = "uncertainty"


class UPGradConfig(MethodConfig):
    """Average of gradients projected onto the dual cone."""

    name: Literal["upgrad"] = "upgrad"


WeightingMethod = method_union(
    AlignedMtlConfig,
    CAGradConfig,
    DwaConfig,
    FamoConfig,
    GradnormConfig,
    IMTLGConfig,
    MGDAConfig,
    NashMtlConfig,
    PCGradConfig,
    RlwConfig,
    StaticConfig,
    UncertaintyConfig,
    UPGradConfig,
)
"""How per-task losses (or their gradients) become one update. The order is the one in which a
wrong name's message lists the valid names."""
