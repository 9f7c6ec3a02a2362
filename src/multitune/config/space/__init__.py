"""`sweep.space:` — what the searches turn: every knob, the params key it sets, its checks,
and the batch-size rule. The sweep searches this space; each baseline searches it without
the multi-task-only knobs (`MULTITASK_ONLY`).

A knob is written three ways in params.yaml::

    lr: 0.001                                        # fixed
    lr: {dist: loguniform, low: 1.0e-4, high: 3.0e-3}  # a distribution
    batch_size: {choice: [128, 256, 512]}            # a list of choices

Method knobs (fusion, sharing, weighting, freezing, sampling, backbone) choose registered
methods, each with knobs of its own that are sampled only when that method is chosen
(conditional)::

    sampling: {choice: [proportional, {name: temperature, temperature: {dist: uniform,
               low: 1, high: 5}}]}
    weighting: {name: static, weights: {dist: loguniform, low: 0.25, high: 4}}

A distribution (or choice) given for a per-task mapping such as `weights` is sampled once
per task.

Here: `SearchSpace` (one field per knob), `METHOD_TARGETS` and `VALUE_TARGETS` (the params
key each knob sets; a knob's values are checked against that key's field when params load)
and the batch-size rule (`batch_size_choices`, `with_batch_sizes`: a space that leaves
`batch_size` out searches the batch sizes fit for each run's labelled train rows).
`knobs.py`: how one knob is written and checked. Sampling a space with Optuna, and putting a
trial's sampled values into params, is `multitune.tuning.space` (config imports no Optuna).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field, PrivateAttr, model_validator
from pydantic.fields import FieldInfo

from multitune.config._base import StrictModel
from multitune.config.model import ModelConfig, TrainConfig
from multitune.config.space.knobs import (
    Choice,
    Distribution,
    Fixed,
    Knob,
    MethodKnob,
    MethodOption,
    _members,
    check_values,
    is_per_task,
    knob_label,
    knob_values,
    method_configs,
)

__all__ = [
    "BATCH_SIZES",
    "METHOD_TARGETS",
    "MULTITASK_ONLY",
    "STEPS_PER_PASS",
    "VALUE_TARGETS",
    "Choice",
    "Distribution",
    "Fixed",
    "Knob",
    "MethodKnob",
    "MethodOption",
    "SearchSpace",
    "batch_size_choices",
    "check_values",
    "is_per_task",
    "knob_label",
    "knob_values",
    "method_configs",
    "target_field",
    "with_batch_sizes",
]

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
        "any task for the multi-task model; see multitune.config.space.batch_size_choices). "
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


BATCH_SIZES = (16, 32, 64, 128, 256, 512)
STEPS_PER_PASS = (16, 512)
"""The searched batch sizes give a pass over the run's labelled train rows between these
many steps."""


def batch_size_choices(rows: int) -> list[int]:
    """The batch sizes a search tries for a run with `rows` labelled train rows: those of
    `BATCH_SIZES` giving `STEPS_PER_PASS` steps a pass, else the one closest to the fewest.

    The same rule for both sides: `rows` is a baseline's task's labelled train rows, or the
    rows labelled for at least one task for the multi-task model
    (`multitune.training.loop.labelled_train_rows`).
    """
    low, high = STEPS_PER_PASS
    fit = [b for b in BATCH_SIZES if low <= rows / b <= high]
    return fit or [min(BATCH_SIZES, key=lambda b: abs(math.log(max(rows, 1) / b / low)))]


def with_batch_sizes(space: SearchSpace, rows: int) -> SearchSpace:
    """`space` searching `batch_size_choices(rows)`, unless it sets `batch_size` itself."""
    if space.batch_size is not None:
        return space
    return space.model_copy(update={"batch_size": Choice(choice=batch_size_choices(rows))})
