"""The search's outputs: the trials table, and a winning config as a full params file."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from multitune import tracking
from multitune.config import Params
from multitune.errors import UserError
from multitune.io import atomic_path, write_text
from multitune.tracking.tags import TRIAL_ID
from multitune.tuning.runner import TrialRecord
from multitune.tuning.trial import unflatten_metrics


def reconcile(
    tracker: tracking.Tracking, parent_run_id: str, records: Sequence[TrialRecord]
) -> dict[str, tuple[str, str]]:
    """Make MLflow match the finished experiment: one ended run per trial, no strays.

    A driver killed mid-sweep can leave a run open for a trial Tune had not yet saved (the
    resumed search runs another in its place): such runs are discarded. A trial whose run
    was left open is ended with the trial's status.

    Returns:
        `{trial_id: (run_id, status)}` after the repair.
    """
    runs = run_ids(tracker, parent_run_id)
    known = {r.trial_id: r for r in records}
    for trial_id, (run_id, status) in list(runs.items()):
        if trial_id not in known:
            tracking.discard(run_id, "trial lost with an interrupted driver", tracking=tracker)
            del runs[trial_id]
        elif status == "RUNNING":
            record = known[trial_id]
            final = "FAILED" if record.status == "failed" else "FINISHED"
            tracking.end_run(run_id, final, record.error, tracking=tracker)
            runs[trial_id] = (run_id, final)
    return runs


def run_ids(tracker: tracking.Tracking, parent_run_id: str) -> dict[str, tuple[str, str]]:
    """`{trial_id: (run_id, status)}` of the (active) child runs of a stage's parent run."""
    return {
        run.tags[TRIAL_ID]: (run.run_id, run.status)
        for run in tracking.child_runs(parent_run_id, tracking=tracker)
        if run.tags.get(TRIAL_ID)
    }


def trials_frame(
    records: Sequence[TrialRecord],
    runs: Mapping[str, tuple[str, str]],
    extra: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per trial.

    Columns: `trial_id`, `status` (completed | stopped | failed), `error`, `config` (JSON of
    the sampled values), `config/<name>` (each sampled value), `val/<task>/<metric>`,
    `delta_m`, `objective`, `epochs_run`, `best_epoch`, `steps`, `converged` (1: stopped by
    patience, 0: cap reached while improving; empty for a trial ASHA stopped), `time_s`,
    `node`, `mlflow_run_id`, plus the constant columns in `extra` (e.g. the baseline's
    `task`).
    """
    rows = []
    for rec in records:
        res = rec.result
        row: dict[str, Any] = {
            **(extra or {}),
            "trial_id": rec.trial_id,
            "status": rec.status,
            "error": rec.error,
            "config": json.dumps(rec.config, sort_keys=True, default=str),
        }
        row.update({f"config/{k}": _cell(v) for k, v in sorted(rec.config.items())})
        val = unflatten_metrics("val", res)
        row.update({f"val/{t}/{m}": v for t, ms in sorted(val.items()) for m, v in ms.items()})
        row.update(
            {
                "delta_m": res.get("delta_m"),
                "objective": res.get("objective"),
                "epochs_run": int(res.get("epochs_run", res.get("epoch", 0)) or 0),
                "best_epoch": res.get("best_epoch"),
                "steps": res.get("steps"),
                "converged": res.get("converged"),
                "time_s": res.get("time_total_s"),
                "node": res.get("node_ip"),
                "mlflow_run_id": runs.get(rec.trial_id, (None, None))[0],
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


FINALISTS = 5
"""Best configs of a search saved as params files (`finalists/<rank>.yaml`): the final stage
re-scores the first `final.selection.finalists` of them by cross-validation for small tasks."""


def ranked(records: Sequence[TrialRecord], metric: str, mode: str) -> list[TrialRecord]:
    """The trials that did not fail and report a finite `metric`, best first (completed
    trials first among equals: they trained to their end)."""
    ok = [
        r
        for r in records
        if r.status != "failed"
        and isinstance(r.result.get(metric), int | float)
        and math.isfinite(r.result[metric])
    ]
    sign = 1.0 if mode == "max" else -1.0
    return sorted(
        ok, key=lambda r: (sign * r.result[metric], r.status == "completed"), reverse=True
    )


def best_record(records: Sequence[TrialRecord], metric: str, mode: str) -> TrialRecord:
    """The trial with the best `metric` among those that did not fail (`ranked`'s first).

    Raises:
        UserError: every trial failed (the message shows the first error).
    """
    ok = ranked(records, metric, mode)
    if not ok:
        first = next((r.error for r in records if r.error), "no result reported")
        raise UserError(f"all {len(records)} trial(s) failed; the first error:\n{first}")
    return ok[0]


def write_finalists(
    directory: Path, finalists: Sequence[tuple[Params, TrialRecord]], metric: str, what: str
) -> None:
    """Write each finalist as `directory/<rank>.yaml` (1 = best), a full params file."""
    directory.mkdir(parents=True, exist_ok=True)
    for rank, (params, record) in enumerate(finalists, start=1):
        write_params(
            directory / f"{rank}.yaml",
            params,
            f"Finalist {rank} of {what}: trial {record.trial_id}, validation {metric} "
            f"{record.result[metric]:.6g}.",
        )


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    """Write a frame atomically."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_params(path: Path, params: Params, header: str) -> None:
    """Write `params` as a full params.yaml (loadable by `multitune train --params`)."""
    body = yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    write_text(path, comment + body)


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, default=str)
