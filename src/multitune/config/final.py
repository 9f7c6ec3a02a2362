"""`final:` — retraining over seeds, the measured comparison, and the registered model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from multitune.config._base import StrictModel


class TransferConfig(StrictModel):
    """How task transfer is measured for the report's heatmap.

    `pairwise`: for every ordered pair (A, B), train the best multi-task config on {A, B}
    and on {B} alone (one seed) and report the change in B's validation score. `none`: skip.
    """

    method: Literal["pairwise", "none"] = Field(
        default="pairwise", description="pairwise runs, or none (no heatmap)."
    )
    epochs: int | None = Field(
        default=4,
        ge=1,
        description="Epoch cap of each transfer run, which keeps n + n(n-1)/2 runs cheap "
        "(null: the final config's own epochs).",
    )
    max_tasks: int = Field(
        default=6,
        ge=2,
        description="Skip the heatmap when there are more tasks than this (runs grow as n^2).",
    )


class ReferenceConfig(StrictModel):
    """A logistic-regression (scikit-learn) reference row per task, on the same features."""

    enabled: bool = Field(default=True, description="Fit the reference models.")
    c: float = Field(default=1.0, gt=0.0, description="Inverse L2 strength (sklearn's C).")
    max_iter: int = Field(default=200, ge=10, description="Solver iterations.")


class FinalConfig(StrictModel):
    """The final stage: retrain the best configs over seeds, compare, register."""

    seeds: int = Field(
        default=3, ge=1, le=50, description="Seeds per config (multi-task and each baseline)."
    )
    seed_base: int = Field(default=1000, description="Seeds used are seed_base + 0..seeds-1.")
    bootstrap_samples: int = Field(
        default=1000, ge=100, le=100_000, description="Bootstrap resamples for the intervals."
    )
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1.0, description="Two-sided level of the intervals."
    )
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    top_trials: int = Field(default=10, ge=1, description="Sweep trials shown in the report.")
    importance: Literal["fanova", "mean_decrease_impurity", "ped_anova"] = Field(
        default="fanova", description="Optuna importance evaluator over the sweep's trials."
    )
    threads: int | None = Field(
        default=1,
        ge=1,
        description="PyTorch intra-op threads while the final runs train (null: PyTorch's "
        "default, one per core). The networks are small: one thread is about as fast on an "
        "idle machine and many times faster on a busy one, where threads oversubscribe.",
    )
    register_model: bool = Field(
        default=True, description="Log the multi-task model and register it (alias gating)."
    )
