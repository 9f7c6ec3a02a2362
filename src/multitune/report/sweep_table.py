"""The report's sweep table: the best trials and the knobs that set them apart.

The sweep's trials table (`trials.parquet`) has a column per sampled value, most of them
empty in most rows (`config/weighting.static.weights.<task>` is set only where static
weighting was drawn). A reader wants the few best trials and what differs between them, so
the report's table has one column per *knob* of `sweep.space`, not per sampled value:

- a method knob shows the method with its own sampled options in one cell: `dwa(T=3.89)`,
  `static(w: a=0.8, b=1.3)`, `mmoe(experts=4)`, `warm_start(unfreeze_after=null)`;
- a knob sampled per task (`class_weighting.<task>`) shows the tasks by value in one cell:
  `balanced: party, speaker` (tasks at `none` are left out; `balanced` alone for all);
- a knob with the same cell in every trial shown is left out and named in the table's note;
- numbers have 3 significant digits; a column of small numbers (lr, weight decay) is written
  in the `5.3e-4` style.

At most `MAX_COLUMNS` columns: the trial (with its status when it did not complete), its
validation Δm, then the knobs that differ, most important first (by the importance the
report computed, else methods first, in `order`). Knobs beyond the budget share the last
column, `other knobs`, as `knob=value` pairs. The full table stays in `trials.parquet`.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from multitune.report.importance import top_trials

MAX_COLUMNS = 10
TRIAL, DELTA_M, OBJECTIVE, OTHER = "trial", "Δm (val)", "objective (val)", "other knobs"
SHORT = {"temperature": "T", "weights": "w"}
"""Short names of method options in a cell (`dwa(T=3.89)`); other options keep theirs."""
NONE_VALUES = ("none", None)
"""Per-task values left out of a per-task cell (the default: nothing applied)."""


@dataclass(frozen=True)
class SweepTable:
    """The sweep's best trials as the report shows them.

    Attributes:
        frame: One row per trial shown, every cell a string; at most `MAX_COLUMNS` columns.
        same: Knob -> the cell every shown trial shares (left out of `frame`).
        shown: How many trials `frame` shows.
        total: How many trials the sweep ran.
        ranked_by_importance: Whether the knob columns are ordered by importance.
        measure: What the trials are ranked and shown by (`Δm` or `objective`).
    """

    frame: pd.DataFrame
    same: dict[str, str] = field(default_factory=dict)
    shown: int = 0
    total: int = 0
    ranked_by_importance: bool = False
    measure: str = "Δm"

    def note(self) -> str:
        """The sentence under the table's title: what is shown, what is left out."""
        order = "most important first" if self.ranked_by_importance else "methods first"
        which = (
            f"All {self.total} trials"
            if self.shown == self.total
            else f"The {self.shown} best of {self.total} trials"
        )
        parts = [
            f"{which} by validation {self.measure} (the sweep's objective), with the knobs "
            f"that differ between them ({order}); a method is shown with its sampled options."
        ]
        if self.same:
            same = ", ".join(f"{k} {v}" for k, v in self.same.items())
            parts.append(f"The same in every trial shown: {same}.")
        parts.append("Every trial and sampled value: the sweep's `trials.parquet`.")
        return " ".join(parts)


def sweep_table(
    trials: pd.DataFrame,
    objective: str,
    params: Mapping[str, str],
    methods: Collection[str],
    order: Sequence[str] = (),
    n: int = 10,
    importance: Mapping[str, float] | None = None,
    max_columns: int = MAX_COLUMNS,
) -> SweepTable:
    """The `n` best trials with the knobs that differ between them, formatted.

    Args:
        trials: The sweep's trials table (`multitune.tuning.outputs.trials_frame`).
        objective: The column ranked on (higher is better).
        params: Sampled-value column -> its dotted name (`config/lr` -> `lr`).
        methods: The knobs that choose a method (`weighting`, `sharing`, ...): their options
            are dotted `<knob>.<method>.<option>[.<task>]`.
        order: The knobs' order without importance; knobs not named follow.
        n: How many trials to show.
        importance: Importance by sampled-value column (`params`' keys); a knob weighs the
            sum of its values'.
        max_columns: The most columns of the table (at least 4).
    """
    top = top_trials(trials, objective, n)
    sampled = [_sampled(row, params) for _, row in top.iterrows()]
    knobs = _knobs(list(params.values()), sampled)
    rank = {knob: i for i, knob in enumerate(order)}
    knobs = dict(sorted(knobs.items(), key=lambda kv: rank.get(kv[0], len(rank))))
    cells = {knob: _cells(knob, keys, sampled, methods) for knob, keys in knobs.items()}
    same = {k: c[0] for k, c in cells.items() if len(set(c)) == 1 and c[0]}
    differ = [k for k, c in cells.items() if len(set(c)) > 1]
    weight = _knob_importance(knobs, params, importance or {})
    ranked = any(weight[k] > 0 for k in differ)
    differ.sort(key=lambda k: -weight[k])  # stable: ties keep `order`
    budget = max(max_columns, 4) - 2
    cut = len(differ) if len(differ) <= budget else budget - 1
    own, rest = differ[:cut], differ[cut:]
    value_name, values = _objective_cells(top, objective)
    frame = pd.DataFrame(
        {
            TRIAL: [_trial_cell(row) for _, row in top.iterrows()],
            value_name: values,
            **{knob: cells[knob] for knob in own},
        }
    )
    if rest:
        frame[OTHER] = [
            "; ".join(f"{k}={cells[k][i]}" for k in rest if cells[k][i]) for i in range(len(top))
        ]
    return SweepTable(
        frame=frame.reset_index(drop=True),
        same=same,
        shown=len(top),
        total=len(trials),
        ranked_by_importance=ranked,
        measure="Δm" if value_name == DELTA_M else "objective",
    )


def _sampled(row: pd.Series, params: Mapping[str, str]) -> dict[str, Any]:
    """A trial's sampled values by dotted name; a value sampled as null is kept as None."""
    values = {name: row[col] for col, name in params.items() if not _missing(row[col])}
    raw = row.get("config")
    if isinstance(raw, str):
        try:
            config = json.loads(raw)
        except ValueError:
            config = {}
        if isinstance(config, dict):
            values.update({k: v for k, v in config.items() if k in params.values()})
    return values


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _knobs(names: list[str], sampled: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Knob -> its dotted names, in the order of first appearance; unused names left out."""
    used = {name for values in sampled for name in values}
    out: dict[str, list[str]] = {}
    for name in names:
        if name in used:
            # A knob's name has no dot: a dotted name is a method's option or a task's value.
            out.setdefault(name.split(".", 1)[0], []).append(name)
    return out


def _cells(
    knob: str, keys: list[str], sampled: list[dict[str, Any]], methods: Collection[str]
) -> list[str]:
    if knob in methods:
        return [_method_cell(knob, values) for values in sampled]
    if keys == [knob]:
        column = [values.get(knob) for values in sampled]
        sci = _scientific([v for v in column if _is_number(v)])
        return ["" if knob not in values else _value(values[knob], sci) for values in sampled]
    return [_per_task_cell(knob, values) for values in sampled]


def _method_cell(knob: str, values: Mapping[str, Any]) -> str:
    """`method(option=value, ...)` of one trial, e.g. `dwa(T=3.89)`."""
    prefix = f"{knob}."
    options = {k.removeprefix(prefix): v for k, v in values.items() if k.startswith(prefix)}
    method = values.get(knob)
    if method is None and options:
        method = next(iter(options)).split(".", 1)[0]  # one method in the space: not sampled
    if method is None:
        return ""
    own = {
        k.removeprefix(f"{method}."): v for k, v in options.items() if k.startswith(f"{method}.")
    }
    grouped: dict[str, dict[str, Any]] = {}
    plain: list[str] = []
    for key, value in own.items():
        option, _, task = key.partition(".")
        if task:
            grouped.setdefault(option, {})[task] = value
        else:
            plain.append(f"{SHORT.get(option, option)}={_value(value, _tiny(value))}")
    nested = [
        f"{SHORT.get(option, option)}: "
        + ", ".join(f"{t}={_value(v, _tiny(v))}" for t, v in per_task.items())
        for option, per_task in grouped.items()
    ]
    parts = plain + nested
    if not parts:
        return str(method)
    return f"{method}({('; ' if nested and len(parts) > 1 else ', ').join(parts)})"


def _per_task_cell(knob: str, values: Mapping[str, Any]) -> str:
    """A knob sampled per task: `balanced: a, b` (tasks at none left out), the value alone
    when every task has it, or `a=1, b=2` for numbers."""
    prefix = f"{knob}."
    per_task = {k.removeprefix(prefix): v for k, v in values.items() if k.startswith(prefix)}
    if not per_task:
        return ""
    if any(_is_number(v) for v in per_task.values()):
        return ", ".join(f"{t}={_value(v, _tiny(v))}" for t, v in per_task.items())
    if len({str(v) for v in per_task.values()}) == 1:
        return _value(next(iter(per_task.values())))  # every task alike: `balanced`, `none`
    by_value: dict[str, list[str]] = {}
    for task, value in per_task.items():
        if value not in NONE_VALUES:
            by_value.setdefault(str(value), []).append(task)
    return "; ".join(f"{v}: {', '.join(tasks)}" for v, tasks in by_value.items())


def _knob_importance(
    knobs: Mapping[str, list[str]], params: Mapping[str, str], importance: Mapping[str, float]
) -> dict[str, float]:
    by_name = {name: importance.get(col, 0.0) for col, name in params.items()}
    return {knob: sum(by_name.get(name, 0.0) for name in names) for knob, names in knobs.items()}


def _objective_cells(top: pd.DataFrame, objective: str) -> tuple[str, list[str]]:
    """Δm in percent where the trials have it, else the objective itself."""
    if "delta_m" in top and pd.to_numeric(top["delta_m"], errors="coerce").notna().any():
        dm = pd.to_numeric(top["delta_m"], errors="coerce")
        return DELTA_M, ["" if math.isnan(v) else f"{100 * v:+.2f}%" for v in dm]
    score = pd.to_numeric(top[objective], errors="coerce")
    return OBJECTIVE, ["" if math.isnan(v) else f"{v:.4f}" for v in score]


def _trial_cell(row: pd.Series) -> str:
    trial = str(row.get("trial_id", row.name))
    status = row.get("status")
    if isinstance(status, str) and status and status != "completed":
        return f"{trial} ({status})"
    return trial


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _tiny(value: Any) -> bool:
    return _is_number(value) and 0 < abs(value) < 0.01


def _scientific(numbers: list[Any]) -> bool:
    """Whether a column of numbers reads best as `5.3e-4`: its typical size is below 0.01."""
    sizes = sorted(abs(float(v)) for v in numbers if float(v) != 0)
    return bool(sizes) and sizes[len(sizes) // 2] < 0.01


def _value(value: Any, scientific: bool = False) -> str:
    """One value as the table shows it: 3 significant digits, whole numbers as such."""
    if value is None:
        return "null"
    if isinstance(value, bool) or not _is_number(value):
        return str(value)
    v = float(value)
    if math.isnan(v):
        return ""
    if scientific and v != 0:
        mantissa, exponent = f"{v:.2e}".split("e")
        return f"{float(mantissa):.3g}e{int(exponent)}"
    if v.is_integer() and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
