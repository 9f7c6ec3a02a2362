"""The baselines stage: one single-task model per task, tuned with the same machinery.

Each task gets its own search (`baselines.num_samples` trials) over `sweep.space` without the
multi-task-only knobs (weighting, sampling, sharing method, freezing), on a plain trunk.
Written to `results/baselines/`: `baselines.json` (per task: best config file, its
validation metrics, the metric searched), `<task>.yaml` (a full params file of that model)
and `trials.parquet` (every trial, with a `task` column).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from multitune.config import Params
from multitune.config.tuning import MULTITASK_ONLY
from multitune.errors import UserError
from multitune.io import atomic_path, write_json
from multitune.training import higher_is_better, primary_metric
from multitune.tuning.outputs import best_record, write_params
from multitune.tuning.runner import SearchJob
from multitune.tuning.session import stage_session
from multitune.tuning.trial import SCORE, TASK_KEY, TrialSpec, trial_base, unflatten_metrics

SUMMARY = "baselines.json"


@dataclass(frozen=True)
class BaselinesOutcome:
    """What the stage wrote: per task, the best trial's metric value."""

    best: dict[str, float]
    trials: int
    resumed: bool


def baseline_base(params: Params, sharing: str) -> dict[str, Any]:
    """The params every baseline trial starts from: a plain trunk, no multi-task methods."""
    base = trial_base(params, params.baselines.epochs)
    previous = base["model"]["sharing"]
    base["model"]["sharing"] = {
        "name": sharing,
        **{k: previous[k] for k in ("hidden", "dropout") if k in previous},
    }
    for key in ("weighting", "sampling", "freezing"):
        base["train"].pop(key, None)  # back to the schema's single-task-neutral defaults
    return base


def run_baselines(
    params: Params, *, data_dir: Path, out_dir: Path, project_root: Path
) -> BaselinesOutcome:
    """Tune a single-task model per task and write `out_dir` (see the module doc).

    Raises:
        UserError: tracking unreachable, cluster unable to run trials, or every trial of a
            task failed.
    """
    cfg = params.baselines
    names = [t.name for t in params.tasks]
    with stage_session(
        "baselines", params, cfg, data_dir=data_dir, project_root=project_root
    ) as session:
        spec = TrialSpec(
            base=baseline_base(params, cfg.sharing),
            space=params.sweep.space.without(MULTITASK_ONLY),
            tasks=names,
            device=session.device(cfg),
            threads=max(1, int(cfg.resources.cpu)),
            seed=params.train.seed,
        )
        job = SearchJob(
            name=session.experiment,
            label="baselines",
            spec=spec,
            budget=cfg,
            num_samples=cfg.num_samples,
            max_epochs=spec.base["train"]["epochs"],
            stage="baselines",
            per_task=True,
            shown="",  # scores of different tasks do not compare
        )
        records, frame = session.search(job, cfg, job.total)
        run_ids = dict(zip(frame["trial_id"], frame["mlflow_run_id"], strict=True))
        summary: dict[str, Any] = {}
        winners: dict[str, tuple[Params, str]] = {}
        best_values: dict[str, float] = {}
        for task in params.tasks:
            metric = primary_metric(task.type)
            mine = [r for r in records if r.config.get(TASK_KEY) == task.name]
            best = best_record(mine, SCORE, "max")
            val = unflatten_metrics("val", best.result).get(task.name, {})
            summary[task.name] = {
                "params": f"{task.name}.yaml",
                "metric": metric,
                "higher_is_better": higher_is_better(metric),
                "val": val,
                "trial_id": best.trial_id,
                "mlflow_run_id": run_ids.get(best.trial_id),
                "epochs_run": int(best.result.get("epochs_run", best.result.get("epoch", 0))),
            }
            winners[task.name] = (spec.params(best.config), best.trial_id)
            best_values[task.name] = val.get(metric, float("nan"))
            session.parent.log_metrics({f"best/{task.name}/{metric}": best_values[task.name]})
        _write_outputs(out_dir, summary, winners, frame)
    return BaselinesOutcome(best=best_values, trials=len(records), resumed=session.resumed)


def _write_outputs(
    out_dir: Path,
    summary: dict[str, Any],
    winners: dict[str, tuple[Params, str]],
    frame: pd.DataFrame,
) -> None:
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        for task, (params, trial_id) in winners.items():
            write_params(
                tmp / f"{task}.yaml",
                params,
                f"The best single-task config for task {task} (baselines trial {trial_id}).\n"
                f"Train it: multitune train --params {out_dir}/{task}.yaml --out <dir>",
            )
        write_json(tmp / SUMMARY, {"tasks": summary})
        frame.to_parquet(tmp / "trials.parquet", index=False)


def read_baselines(baselines_dir: Path) -> dict[str, dict[str, float]]:
    """The baselines' validation metrics `{task: {metric: value}}` (Delta-m's reference).

    Raises:
        UserError: the baselines stage has not run.
    """
    path = baselines_dir / SUMMARY
    if not path.exists():
        raise UserError(f"{path} is missing; run `dvc repro baselines` first")
    tasks = json.loads(path.read_text())["tasks"]
    return {task: dict(entry["val"]) for task, entry in tasks.items()}
