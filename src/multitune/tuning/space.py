"""The search space as an Optuna define-by-run function, and sampled values -> params.

Method knobs are sampled first; a method's own options are sampled only when it is chosen,
so conditional parameters (the temperature of temperature sampling) appear only in the
trials that use them. Parameter names are dotted: `sampling`, `sampling.temperature.
temperature`, `weighting.static.weights.<task>`, `class_weighting.<task>` (a multi-task
search: see `SearchSpace.per_task_class_weighting`), `lr`.

The space itself (its knobs, where each goes in params, their checks, the batch-size rule)
is `multitune.config.space`; this module is the part that needs Optuna.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from multitune.config.space import (
    METHOD_TARGETS,
    VALUE_TARGETS,
    Choice,
    Distribution,
    Fixed,
    MethodKnob,
    SearchSpace,
    is_per_task,
    knob_label,
    method_configs,
    target_field,
)

if TYPE_CHECKING:
    # The Ray trainable imports this module (through `trial`) to build a trial's params; it
    # samples nothing, so its workers need not import Optuna (about 0.1 s each).
    import optuna


ValueKnob = Distribution | Choice | Fixed


def suggest(space: SearchSpace, trial: optuna.Trial, tasks: list[str]) -> None:
    """Sample every knob of `space` on an Optuna trial (the define-by-run function body)."""
    for name, knob in space.knobs().items():
        if isinstance(knob, MethodKnob):
            _suggest_method(name, knob, trial, tasks)
        elif (per_task := _per_task(space, name, tasks)) is not None:
            for task in per_task:
                _suggest_value(f"{name}.{task}", knob, trial)
        else:
            _suggest_value(name, knob, trial)


def apply(
    space: SearchSpace, values: Mapping[str, Any], base: Mapping[str, Any], tasks: list[str]
) -> dict[str, Any]:
    """The params mapping of one trial: `base` with the sampled `values` put in place.

    Args:
        space: The search space the values were sampled from.
        values: Sampled values by parameter name (what `suggest` recorded); may hold other
            keys, which are ignored.
        base: The full params as a mapping (`Params.model_dump(mode="json")`).
        tasks: The tasks trained (per-task options are filled for these).

    Returns:
        A new params mapping, to validate with `multitune.config.validate_params`.
    """
    out = copy.deepcopy(dict(base))
    knobs = space.knobs()
    for name, knob in knobs.items():
        if isinstance(knob, MethodKnob):
            _set(out, METHOD_TARGETS[name], _method_value(name, knob, values, out, tasks))
    for name, knob in knobs.items():
        if isinstance(knob, MethodKnob):
            continue
        per_task = _per_task(space, name, tasks)
        value = (
            _value(name, knob, values)
            if per_task is None
            else {task: _value(f"{name}.{task}", knob, values) for task in per_task}
        )
        _set(out, VALUE_TARGETS[name], value)
    return out


def _per_task(space: SearchSpace, name: str, tasks: list[str]) -> list[str] | None:
    """The tasks a value knob is sampled for one by one, or None: once for the run."""
    if name != "class_weighting" or space.class_weighting_tasks is None:
        return None
    return [t for t in tasks if t in space.class_weighting_tasks]


def _suggest_method(name: str, knob: MethodKnob, trial: optuna.Trial, tasks: list[str]) -> None:
    chosen = knob.options[0].name
    if len(knob.options) > 1:
        chosen = trial.suggest_categorical(name, [o.name for o in knob.options])
    option = next(o for o in knob.options if o.name == chosen)
    config = method_configs(target_field(METHOD_TARGETS[name]).annotation)[chosen]
    for key, sub in option.params.items():
        prefix = f"{name}.{chosen}.{key}"
        if is_per_task(config.model_fields[key]) and not isinstance(sub, Fixed):
            for task in tasks:
                _suggest_value(f"{prefix}.{task}", sub, trial)
        else:
            _suggest_value(prefix, sub, trial)


def _suggest_value(name: str, knob: ValueKnob, trial: optuna.Trial) -> None:
    if isinstance(knob, Distribution):
        if knob.is_int:
            step = int(knob.step) if knob.step else 1
            trial.suggest_int(name, int(knob.low), int(knob.high), step=step, log=knob.is_log)
        else:
            trial.suggest_float(name, knob.low, knob.high, step=knob.step, log=knob.is_log)
    elif isinstance(knob, Choice) and len(knob.choice) > 1:
        trial.suggest_categorical(name, [knob_label(c) for c in knob.choice])


def _method_value(
    name: str,
    knob: MethodKnob,
    values: Mapping[str, Any],
    current: Mapping[str, Any],
    tasks: list[str],
) -> dict[str, Any]:
    chosen = str(values.get(name, knob.options[0].name))
    option = next(o for o in knob.options if o.name == chosen)
    config = method_configs(target_field(METHOD_TARGETS[name]).annotation)[chosen]
    previous = _get(current, METHOD_TARGETS[name]) or {}
    # Options the user set on the previous method carry over when the new one has them too.
    result = {k: v for k, v in previous.items() if k in config.model_fields}
    result["name"] = chosen
    for key, sub in option.params.items():
        prefix = f"{name}.{chosen}.{key}"
        if is_per_task(config.model_fields[key]) and not isinstance(sub, Fixed):
            result[key] = {task: _value(f"{prefix}.{task}", sub, values) for task in tasks}
        else:
            result[key] = _value(prefix, sub, values)
    return result


def _value(name: str, knob: ValueKnob, values: Mapping[str, Any]) -> Any:
    if isinstance(knob, Fixed):
        return copy.deepcopy(knob.root)
    if isinstance(knob, Choice):
        if len(knob.choice) == 1:
            return copy.deepcopy(knob.choice[0])
        label = values[name]
        return copy.deepcopy(next(c for c in knob.choice if knob_label(c) == label))
    value = values[name]
    return int(value) if knob.is_int else float(value)


def _get(mapping: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = mapping
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _set(mapping: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = mapping
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
