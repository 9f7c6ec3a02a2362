"""What one trial needs besides its sampled values, and how its params are built.

Kept free of Ray so the driver (MLflow logging, outputs) and the Ray trainable share it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from multitune.config import Params, validate_params
from multitune.config.loader import params_problems
from multitune.config.model import WEIGHTED_TASK_TYPES
from multitune.config.space import (
    METHOD_TARGETS,
    VALUE_TARGETS,
    MethodKnob,
    SearchSpace,
    knob_label,
)
from multitune.training.metrics import objective
from multitune.tuning.space import ValueKnob, apply

TASK_KEY = "task"
"""Config key naming a baseline trial's task."""

SCORE = "score"
"""What every trial reports for the search to maximize (`trial_score`): the validation
objective its training stopped on, Delta-m over every metric in the sweep, the task's primary
validation metric for a baseline."""

FAILED_SCORE = -1e6
"""Objective reported when it cannot be computed (no metric to score): ranks last."""

WARM_START = "warm_start"
"""The freezing policy that starts from a saved (single-task) model."""


@dataclass(frozen=True)
class WarmSource:
    """A saved single-task model a sweep trial may start from.

    Attributes:
        path: Its folder, as params files name it (relative to where the stages run).
        model: Its `model` section (encoder, fusion, sharing, backbone).
        weights: Its `model.safetensors`, shipped with the trial spec.
    """

    path: str
    model: dict[str, Any]
    weights: bytes

    @property
    def digest(self) -> str:
        """MD5 of the weights (a changed source makes a new search, not a resumed one)."""
        return hashlib.md5(self.weights, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class TrialSpec:
    """The fixed part of every trial of one search.

    Attributes:
        base: The full params as a mapping; sampled values are put into it.
        space: The search space. With several `tasks`, its `class_weighting` knob is sampled
            once per classification and binary task of `base` (as the baselines search it
            once for their task).
        tasks: The tasks trained, unless a trial's config names its `task` (baselines).
        baseline: Single-task validation metrics `{task: {metric: value}}` (the sweep's
            Delta-m reference), or None (baselines).
        device: `cpu` or `cuda`.
        threads: Torch intra-op threads per trial (its CPU share).
        seed: Training seed (`train.seed`).
        task_spaces: A baseline task's own space (batch sizes fit for its rows, a linear
            option), used instead of `space` for trials that name that task.
        first_points: Per task, values to try first (e.g. the linear model), as Optuna
            parameter labels.
        checkpoint_every: Epochs between the trial state's checkpoints.
        warm_sources: Per task, the saved single-task model a warm start may begin from.
        warm_default: The task a warm start with no task begins from.
    """

    base: dict[str, Any]
    space: SearchSpace
    tasks: list[str]
    baseline: dict[str, dict[str, float]] | None = None
    device: str = "cpu"
    threads: int = 1
    seed: int = 0
    task_spaces: dict[str, SearchSpace] = field(default_factory=dict)
    first_points: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    checkpoint_every: int = 1
    warm_sources: dict[str, WarmSource] = field(default_factory=dict)
    warm_default: str | None = None

    def __post_init__(self) -> None:
        if len(self.tasks) > 1 and self.space.class_weighting_tasks is None:
            weighted = [
                t["name"] for t in self.base.get("tasks", []) if t["type"] in WEIGHTED_TASK_TYPES
            ]
            object.__setattr__(self, "space", self.space.per_task_class_weighting(weighted))

    def space_for(self, task: str | None) -> SearchSpace:
        """The space of a baseline `task` (its own when given), else the shared one."""
        return self.task_spaces.get(task, self.space) if task is not None else self.space

    def trial_tasks(self, values: Mapping[str, Any]) -> list[str]:
        """The tasks a trial trains: its config's `task` (a baseline), else `tasks`."""
        task = values.get(TASK_KEY)
        return [str(task)] if task is not None else list(self.tasks)

    def params(self, values: Mapping[str, Any]) -> Params:
        """The validated params of a trial with sampled `values` (only its tasks kept).

        Raises:
            ConfigError: the sampled combination does not validate.
        """
        return validate_params(self._raw(values), source="trial config")

    def config_error(self, values: Mapping[str, Any]) -> str | None:
        """Why a trial's sampled `values` do not validate, or None when they do.

        One line: the knobs behind the settings at fault (all knobs when none is), their
        sampled values, and what is wrong, e.g. ``sampled sweep.space.encoder_hidden=12.4,
        which does not validate: model.encoder.hidden: Input should be a valid integer``.
        """
        problems = params_problems(self._raw(values))
        if not problems:
            return None
        keys = [p.split(": ", 1)[0] for p in problems]
        knobs = self._space(values).knobs()
        at_fault = [n for n in knobs if any(_within(k, _target(n)) for k in keys)] or list(knobs)
        sampled = ", ".join(_sampled(n, knobs[n], values) for n in at_fault)
        return f"sampled {sampled or 'nothing'}, which does not validate: {'; '.join(problems)}"

    def _space(self, values: Mapping[str, Any]) -> SearchSpace:
        task = values.get(TASK_KEY)
        return self.space_for(None if task is None else str(task))

    def _raw(self, values: Mapping[str, Any]) -> dict[str, Any]:
        tasks = self.trial_tasks(values)
        raw = apply(self._space(values), values, self.base, tasks)
        raw = adopt_warm_start(raw, self.warm_sources, self.warm_default)
        if len(tasks) < len(raw.get("tasks", [])):
            raw["tasks"] = [t for t in raw["tasks"] if t["name"] in tasks]
            raw["task_groups"] = {
                g: m for g, m in raw.get("task_groups", {}).items() if set(m) <= set(tasks)
            }
            weighting = raw.get("train", {}).get("class_weighting")
            if isinstance(weighting, dict):  # a per-task setting names only the run's tasks
                raw["train"]["class_weighting"] = {
                    t: w for t, w in weighting.items() if t in tasks
                }
        return raw


def _target(knob: str) -> str:
    """The params key a knob sets (`model.encoder.hidden`)."""
    return ".".join(METHOD_TARGETS.get(knob) or VALUE_TARGETS[knob])


def _within(key: str, target: str) -> bool:
    """Whether params key `key` is `target` or below it."""
    return key == target or key.startswith((f"{target}.", f"{target}["))


def _sampled(name: str, knob: ValueKnob | MethodKnob, values: Mapping[str, Any]) -> str:
    """`sweep.space.<param>=<value>` for each value a knob sampled (its value when fixed)."""
    own = {k: v for k, v in sorted(values.items()) if k == name or k.startswith(f"{name}.")}
    if not own:
        return f"sweep.space.{name}={knob_label(knob.model_dump())}"
    return ", ".join(
        f"sweep.space.{k}={f'{v:.6g}' if isinstance(v, float) else v}" for k, v in own.items()
    )


def trial_score(
    val: Mapping[str, Mapping[str, float]],
    task_types: Mapping[str, str],
    baseline: Mapping[str, Mapping[str, float]] | None,
) -> float:
    """A trial's score from its validation metrics: the objective its training stops on
    (`multitune.training.metrics.objective`, with the sweep's `baseline` Delta-m over every
    metric, without it a baseline task's primary metric), `FAILED_SCORE` when undefined."""
    value = objective(val, task_types, baseline)
    return value if math.isfinite(value) else FAILED_SCORE


def trial_base(params: Params, epochs: int | None) -> dict[str, Any]:
    """The params mapping trials start from, with the search's epoch budget applied."""
    base = params.model_dump(mode="json")
    if epochs is not None:
        base["train"]["epochs"] = epochs
    return base


def clean_metrics(metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per-task metrics without missing or non-finite values."""
    return {
        task: {
            m: float(v)
            for m, v in values.items()
            if isinstance(v, int | float) and math.isfinite(float(v))
        }
        for task, values in metrics.items()
    }


def flat_metrics(prefix: str, metrics: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """`{task: {metric: v}}` -> `{"<prefix>/<task>/<metric>": v}`."""
    return {f"{prefix}/{t}/{m}": v for t, values in metrics.items() for m, v in values.items()}


def unflatten_metrics(prefix: str, flat: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The inverse of `flat_metrics` for the keys under `prefix`."""
    out: dict[str, dict[str, float]] = {}
    for key, value in flat.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == prefix and isinstance(value, int | float):
            out.setdefault(parts[1], {})[parts[2]] = float(value)
    return out


def adopt_warm_start(
    raw: dict[str, Any], sources: Mapping[str, WarmSource], default: str | None
) -> dict[str, Any]:
    """A trial's params mapping, with a sampled warm start from a task resolved: its
    source's path filled in and its encoders, fusion, trunk and backbone taken (see
    `multitune.tuning.warm`). Other trials' mappings are returned as they are."""
    freezing = raw.get("train", {}).get("freezing") or {}
    if freezing.get("name") != WARM_START or freezing.get("path"):
        return raw
    task = freezing.get("task") or default
    source = sources.get(task) if task else None
    if source is None:
        return raw  # the stage checked its sources; `WarmStart.setup` names what is missing
    model, saved = raw["model"], source.model
    raw["train"]["freezing"] = {**freezing, "task": task, "path": source.path}
    model["encoder"] = {**saved["encoder"], "dropout": model["encoder"].get("dropout")}
    model["fusion"] = dict(saved["fusion"])
    model["sharing"] = {**saved["sharing"], "dropout": model["sharing"].get("dropout")}
    model["backbone"] = dict(saved["backbone"])
    return raw
