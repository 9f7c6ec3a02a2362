"""`baselines:` and `sweep:` — the search: budget, search algorithm, scheduler, resources."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic.fields import FieldInfo

from multitune.config._base import StrictModel
from multitune.config.model import ModelConfig, TrainConfig
from multitune.config.space import (
    Choice,
    Distribution,
    Fixed,
    Knob,
    MethodKnob,
    _members,
    check_values,
    method_configs,
)

METHOD_TARGETS: dict[str, tuple[str, ...]] = {
    "fusion": ("model", "fusion"),
    "sharing": ("model", "sharing"),
    "weighting": ("train", "weighting"),
    "freezing": ("train", "freezing"),
    "sampling": ("train", "sampling"),
    "backbone": ("model", "backbone"),
}
"""Method knob -> where its chosen config goes in params."""

VALUE_TARGETS: dict[str, tuple[str, ...]] = {
    "lr": ("train", "lr"),
    "weight_decay": ("train", "weight_decay"),
    "batch_size": ("train", "batch_size"),
    "trunk": ("model", "sharing", "hidden"),
    "dropout": ("model", "sharing", "dropout"),
    "encoder_hidden": ("model", "encoder", "hidden"),
    "encoder_dropout": ("model", "encoder", "dropout"),
    "encoder_layers": ("model", "encoder", "layers"),
    "class_weighting": ("train", "class_weighting"),
}
"""Value knob -> the params key it sets."""

MULTITASK_ONLY = ("weighting", "sampling", "sharing", "freezing")
"""Knobs left out of single-task baselines (they balance, sample or share across tasks)."""

_SECTIONS: dict[str, Any] = {"model": ModelConfig, "train": TrainConfig}


class SearchSpace(StrictModel):
    """The knobs a search turns. An omitted knob keeps its value from `model:` / `train:`."""

    fusion: MethodKnob | None = Field(default=None, description="model.fusion method(s).")
    sharing: MethodKnob | None = Field(default=None, description="model.sharing method(s).")
    weighting: MethodKnob | None = Field(
        default=None,
        description="train.weighting method(s); e.g. {name: static, weights: {dist: "
        "loguniform, low: 0.25, high: 4}} searches a loss weight per task.",
    )
    freezing: MethodKnob | None = Field(default=None, description="train.freezing policy.")
    sampling: MethodKnob | None = Field(
        default=None, description="train.sampling method(s), each with its own options."
    )
    backbone: MethodKnob | None = Field(
        default=None,
        description="model.backbone: e.g. {choice: [frozen, {name: top_k, layers: {choice: "
        "[1, 2]}}]} compares the frozen text encoder with its top layers fine-tuned.",
    )
    lr: Knob | None = Field(default=None, description="train.lr.")
    weight_decay: Knob | None = Field(default=None, description="train.weight_decay.")
    batch_size: Knob | None = Field(
        default=None,
        description="train.batch_size. Left out: both sides search the batch sizes fit for "
        "the labelled train rows of each run (a task's for its baseline, those labelled for "
        "any task for the multi-task model; see multitune.tuning.space.batch_size_choices). "
        "Set (a list, a range or a value): the same for both sides.",
    )
    trunk: Knob | None = Field(
        default=None, description="model.sharing.hidden (trunk layer widths), any method."
    )
    dropout: Knob | None = Field(default=None, description="model.sharing.dropout.")
    encoder_hidden: Knob | None = Field(default=None, description="model.encoder.hidden.")
    encoder_dropout: Knob | None = Field(default=None, description="model.encoder.dropout.")
    encoder_layers: Knob | None = Field(
        default=None, description="model.encoder.layers (0: a linear projection)."
    )
    class_weighting: Knob | None = Field(
        default=None,
        description="train.class_weighting: e.g. {choice: [none, balanced]} (macro-F1 on "
        "skewed classes). Sampled once per classification and binary task, like static loss "
        "weights: per task in the multi-task sweep, for its task in a baseline.",
    )

    _class_weighting_tasks: tuple[str, ...] | None = PrivateAttr(default=None)

    KEY_HINTS: ClassVar[dict[str, str]] = {
        "standardize": "standardization is not searched: set model.standardize (true or false)",
    }

    @model_validator(mode="after")
    def _check_targets(self) -> SearchSpace:
        for name, path in METHOD_TARGETS.items():
            knob = getattr(self, name)
            if knob is not None:
                try:
                    knob.check(target_field(path).annotation)
                except ValueError as err:
                    raise ValueError(f"{name}: {err}") from None
        for name, path in VALUE_TARGETS.items():
            knob = getattr(self, name)
            if knob is not None:
                check_values(name, knob, target_field(path))
        for name, path in VALUE_TARGETS.items():
            owner = path[1]
            method = getattr(self, owner, None) if owner in METHOD_TARGETS else None
            if getattr(self, name) is not None and isinstance(method, MethodKnob):
                clash = [o.name for o in method.options if path[-1] in o.params]
                if clash:
                    raise ValueError(
                        f"{name} and {owner} ({', '.join(clash)}) both set "
                        f"{'.'.join(path)}; keep one"
                    )
        return self

    def knobs(self) -> dict[str, Distribution | Choice | Fixed | MethodKnob]:
        """The knobs that are set, by name."""
        return {k: v for k in type(self).model_fields if (v := getattr(self, k)) is not None}

    def without(self, names: tuple[str, ...]) -> SearchSpace:
        """This space with the named knobs left out."""
        return self.model_copy(update=dict.fromkeys(names))

    @property
    def class_weighting_tasks(self) -> tuple[str, ...] | None:
        """The tasks `class_weighting` is sampled for one by one (see
        `per_task_class_weighting`), or None: one value for the whole run."""
        return self._class_weighting_tasks

    def per_task_class_weighting(self, tasks: Sequence[str]) -> SearchSpace:
        """This space with `class_weighting` sampled once per task of `tasks` (a multi-task
        search's classification and binary tasks), so a trial's ``train.class_weighting`` is
        ``{task: value}``. A fixed knob, or one whose choices are not all single values,
        stays one value for the run."""
        out = self.model_copy()
        knob = self.class_weighting
        per_task = not isinstance(knob, Fixed) and all(
            isinstance(c, str) for c in getattr(knob, "choice", [])
        )
        out._class_weighting_tasks = tuple(tasks) if per_task else None
        return out


def target_field(path: tuple[str, ...]) -> FieldInfo:
    """The schema field at a params path, looking inside method configs for nested keys."""
    section, *keys = path
    model: Any = _SECTIONS[section]
    info: FieldInfo | None = None
    for depth, key in enumerate(keys):
        candidates = list(method_configs(model).values()) or _members(model)
        for cand in candidates:
            info = getattr(cand, "model_fields", {}).get(key)
            if info is not None:
                break
        if info is None:
            raise ValueError(f"params have no {'.'.join(path[: depth + 2])} to search")
        model = info.annotation
    assert info is not None
    return info


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
