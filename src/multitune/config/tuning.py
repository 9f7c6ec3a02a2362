"""`baselines:` and `sweep:` — the search: budget, search algorithm, scheduler, resources.

What the searches turn (`sweep.space`) is `multitune.config.space`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from multitune.config._base import StrictModel
from multitune.config.space import SearchSpace


class SearchConfig(StrictModel):
    """The search algorithm: Optuna's TPE through Ray Tune's OptunaSearch."""

    seed: int = Field(default=0, description="Seed of the TPE sampler.")
    n_startup_trials: int = Field(
        default=6, ge=1, description="Random trials before TPE starts modelling."
    )
    multi_objective: bool = Field(
        default=False,
        description="Search the tasks' validation scores as separate objectives (a Pareto "
        "front) instead of Delta-m; best.yaml is the front's best Delta-m.",
    )


class AshaConfig(StrictModel):
    """Asynchronous successive halving: stop trials whose objective lags at a rung."""

    name: Literal["asha"] = "asha"
    grace_period: int = Field(default=2, ge=1, description="Epochs before a trial can stop.")
    reduction_factor: float = Field(default=3.0, gt=1.0, description="Keep 1/this per rung.")


class NoScheduler(StrictModel):
    """Every trial runs until the trainer stops it (epochs or early stopping)."""

    name: Literal["none"] = "none"


SchedulerConfig = Annotated[AshaConfig | NoScheduler, Field(discriminator="name")]


class ResourcesConfig(StrictModel):
    """What one trial reserves. Trials run side by side as the cluster allows."""

    cpu: float = Field(default=1.0, gt=0, description="CPUs per trial (fractions allowed).")
    gpu: float = Field(
        default=0.0,
        ge=0,
        description="GPUs per trial; a fraction (e.g. 0.25) lets trials share one GPU.",
    )

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, v: float) -> float:
        if v > 1 and not float(v).is_integer():
            raise ValueError("more than one GPU per trial must be a whole number")
        return v


class _SearchBudget(StrictModel):
    """What baselines and the sweep share: the search machinery and where it runs."""

    search: SearchConfig = Field(default_factory=SearchConfig)
    scheduler: SchedulerConfig = Field(default_factory=AshaConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    max_concurrent: int | None = Field(
        default=None, ge=1, description="Trials at once (null: as many as resources allow)."
    )
    max_failures: int = Field(
        default=2, ge=0, description="Retries of a crashed trial, from its last checkpoint."
    )
    checkpoint_every: int = Field(
        default=3,
        ge=1,
        description="Save a trial's state every N epochs: a crashed trial, or one of a killed "
        "sweep, resumes from there, losing at most N-1 epochs; 1: every epoch.",
    )
    epochs: int | None = Field(
        default=None,
        ge=1,
        description="Epoch cap of each trial (early stopping ends it when validation stops "
        "improving); null: train.epochs. The winning config is written with this value.",
    )


class BaselinesConfig(_SearchBudget):
    """Single-task tuning per task: `sweep.space` minus the multi-task-only knobs, made fit
    for one task (see `multitune.tuning.baselines.baseline_space`)."""

    num_samples: int | None = Field(
        default=None,
        ge=1,
        description="Trials per task; null: sweep.num_samples, the same search effort as the "
        "multi-task model.",
    )
    sharing: str = Field(
        default="hard", description="The sharing method of the single-task trunk."
    )
    linear_option: bool = Field(
        default=True,
        description="Offer a linear model (encoder_layers 0, concat fusion, no trunk layer) "
        "and try it first, so a tuned baseline is never worse than the linear model it could "
        "have been.",
    )
    class_weighting: bool = Field(
        default=True,
        description="Search train.class_weighting (none | balanced) for each classification "
        "and binary task's baseline when sweep.space does not set it (when it does, both "
        "sides search it per task).",
    )

    @field_validator("class_weighting", mode="before")
    @classmethod
    def _a_switch(cls, value: Any) -> Any:
        if value in ("none", "balanced"):
            raise ValueError(
                f"expected true or false (got {value!r}): true searches none | balanced for "
                "each classification and binary task's baseline, false keeps "
                f"train.class_weighting; to weigh classes one way, set train.class_weighting: "
                f"{value}"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, value: Any) -> Any:
        if isinstance(value, dict) and "scale_batch_size" in value:
            raise ValueError(
                "scale_batch_size is gone: one batch-size rule now serves both sides. Leave "
                "sweep.space.batch_size out for batch sizes fit to each run's labelled train "
                "rows (what scale_batch_size: true did for the baselines), or set it for the "
                "same batch sizes on both sides"
            )
        return value

    def trials_per_task(self, sweep: SweepConfig) -> int:
        """`num_samples`, or the sweep's when null."""
        return self.num_samples if self.num_samples is not None else sweep.num_samples


class SweepConfig(_SearchBudget):
    """The multi-task Ray Tune sweep. Objective: Delta-m over every validation metric against
    the baselines (`multitune.training.metrics.objective`, also its trials' early stopping)."""

    num_samples: int = Field(default=16, ge=1, description="Trials in the sweep.")
    space: SearchSpace = Field(default_factory=SearchSpace, description="The search space.")
    ray_address: str | None = Field(
        default=None,
        description="Attach to this Ray cluster (`auto`: the one `ray start` runs on this "
        "machine; host:port; `ray://host:10001`); RAY_ADDRESS also works. Null: a Ray of the "
        "stage's own on 127.0.0.1 (dashboard off), whatever else runs on the machine.",
    )
    storage_path: str = Field(
        default="ray_results",
        description="Tune's experiment state and checkpoints (relative to the project root); "
        "with several nodes, shared storage (NFS path mounted on every node, or s3://...).",
    )
    object_store_mb: int | None = Field(
        default=None,
        ge=80,
        description="Object store of a local Ray in MiB (null: sized from the features).",
    )
