"""The report's tables as DataFrames of formatted cells: the comparison, the runs, the
linear reference's settings, the transfer matrix and free-form settings."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from multitune.report.comparison import RowResult
from multitune.report.content import ReportInputs, RunRecord, linear_score, pct

TRANSFER_LABEL = "trained with (A) \\ scored (B)"
"""Header of the transfer table's first column: the source task of each row."""

NOT_CONVERGED = "no — hit its cap while improving"


def comparison_frame(inputs: ReportInputs) -> pd.DataFrame:
    """The comparison table as a DataFrame of formatted strings, one row per metric: both
    sides, the raw and the family-wise interval, the single-task side's kind, and the
    single-task network's score where the chosen side is another model."""
    c = inputs.comparison
    level = pct(c)
    records = []
    for r in c.rows:
        linear = linear_score(r, inputs)
        records.append(
            {
                "task": r.name if r.kind == "task" else f"{r.name} (group)",
                "metric": f"{r.metric} {'↑' if r.higher_is_better else '↓'}",
                "single-task side": r.single_kind,
                "single-task": f"{r.single_mean:.4f} ± {r.single_std:.4f}",
                "multi-task": f"{r.multi_mean:.4f} ± {r.multi_std:.4f}",
                "delta": f"{r.delta:+.4f}",
                f"raw {level} CI": _ci(r.ci_low, r.ci_high),
                f"family-wise {level} CI": _ci(r.adj_low, r.adj_high) if r.in_family else "",
                "verdict": r.verdict,
                "single-task network": _network_cell(r),
                "linear": "" if linear is None else f"{linear:.4f}",
                f"network - linear {level} CI": _floor_cell(r) if linear is not None else "",
            }
        )
    return pd.DataFrame.from_records(records)


def _network_cell(r: RowResult) -> str:
    """The network's score when the chosen single-task side is another model, else ""."""
    if r.network_values == r.single_values:
        return ""
    std = float(pd.Series(r.network_values).std()) if len(r.network_values) > 1 else 0.0
    return f"{r.network_mean:.4f} ± {std:.4f}"


def _ci(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "not reported"
    return f"[{low:+.4f}, {high:+.4f}]"


def _floor_cell(r: RowResult) -> str:
    cell = _ci(r.floor_low, r.floor_high)
    if r.chosen_below_floor:
        cell += " ⚠ below linear"
    elif r.below_floor:
        cell += f" ⚠ network below linear (diagnostic; {r.single_kind} chosen)"
    if r.multi_below_floor:
        also = r.chosen_below_floor or r.below_floor
        cell += " (multi-task also below linear)" if also else " ⚠ multi below linear"
    return cell


def runs_frame(runs: list[RunRecord]) -> pd.DataFrame:
    """The run list: kind, tasks, seed, run id, epochs, steps, best step, converged."""
    converged = {True: "yes", False: NOT_CONVERGED, None: ""}
    frame = pd.DataFrame(
        [
            {
                "kind": r.kind,
                "tasks": ", ".join(r.tasks),
                "seed": r.seed,
                "run id": r.run_id,
                "epochs": r.epochs_run,
                "steps": r.steps,
                "best step": r.best_step,
                "converged": converged[r.converged],
            }
            for r in runs
        ],
        columns=["kind", "tasks", "seed", "run id", "epochs", "steps", "best step", "converged"],
    )
    return frame.astype({c: "Int64" for c in ("seed", "epochs", "steps", "best step")})


def key_value_frame(values: dict[str, Any]) -> pd.DataFrame:
    """A two-column table (setting, value) of a free-form mapping."""
    return pd.DataFrame({"setting": list(values), "value": [str(v) for v in values.values()]})


def reference_frame(chosen: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per task: the linear reference's chosen setting, one column per key."""
    keys = list(dict.fromkeys(k for setting in chosen.values() for k in setting))
    return pd.DataFrame(
        [{"task": t, **{k: str(s.get(k, "")) for k in keys}} for t, s in chosen.items()],
        columns=["task", *keys],
    )


def transfer_frame(transfer: pd.DataFrame) -> pd.DataFrame:
    """The transfer matrix with its row labels (the source tasks) as the first column."""
    table = transfer.round(4)
    table.columns = [str(col) for col in table.columns]
    table.insert(0, TRANSFER_LABEL, [str(i) for i in table.index])
    return table.reset_index(drop=True)
