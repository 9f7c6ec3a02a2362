"""The sweep stage: the multi-task search, its objective Delta-m against the baselines.

Written to `results/sweep/`: `trials.parquet` (one row per trial: sampled config, status,
per-task validation metrics, Delta-m, epochs run, MLflow run id, node) and `best.yaml` (the
winning configuration as a full params file, loadable by `multitune train`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from multitune.config import Params
from multitune.config.space import with_batch_sizes
from multitune.errors import UserError
from multitune.io import atomic_path
from multitune.training import TrainingData, higher_is_better, primary_metric
from multitune.training.loop import labelled_train_rows
from multitune.tuning.baselines import SUMMARY, read_baselines
from multitune.tuning.outputs import (
    FINALISTS,
    best_record,
    ranked,
    write_finalists,
    write_params,
)
from multitune.tuning.stage import Searched, StagePlan, TrialRuntime, run_stage
from multitune.tuning.trial import TrialSpec, WarmSource, trial_base
from multitune.tuning.warm import load_sources, searched_tasks

METRIC = "delta_m"


@dataclass(frozen=True)
class SweepOutcome:
    """The sweep's result in brief."""

    best_trial: str
    best_delta_m: float
    trials: int
    statuses: dict[str, int]
    resumed: bool


def run_sweep(
    params: Params,
    *,
    data_dir: Path,
    baselines_dir: Path,
    out_dir: Path,
    project_root: Path,
) -> SweepOutcome:
    """Search multi-task configs (Delta-m on validation vs the baselines); write `out_dir`.

    Raises:
        UserError: baselines missing, tracking unreachable, cluster unable to run the
            trials, or every trial failed.
    """
    # Read before tracking opens: a missing baseline fails the stage at once.
    baseline = read_baselines(baselines_dir)
    missing = [t.name for t in params.tasks if t.name not in baseline]
    if missing:
        raise UserError(
            f"{baselines_dir}: no baseline for task(s) {', '.join(missing)}; "
            "rerun `dvc repro baselines`"
        )
    sources, default = _warm_sources(params, baselines_dir)
    stage = _Sweep(params, out_dir, baseline, sources, default)
    return run_stage(stage, params, data_dir=data_dir, project_root=project_root)


@dataclass(frozen=True)
class _Sweep:
    """The sweep as a search stage (`multitune.tuning.stage`): one search over every task,
    scored by Delta-m against `baseline`, that may warm-start from the baselines' models.

    Attributes:
        params: The validated params.
        out_dir: Where its outputs go.
        baseline: The baselines' validation metrics `{task: {metric: value}}`.
        sources: The single-task models a trial may warm-start from, by task.
        default: The task a warm start with no task begins from.
    """

    params: Params
    out_dir: Path
    baseline: dict[str, dict[str, float]]
    sources: dict[str, WarmSource]
    default: str | None

    @property
    def plan(self) -> StagePlan:
        """`sweep.num_samples` trials; one objective per task when `multi_objective`."""
        cfg = self.params.sweep
        objectives: tuple[tuple[str, str], ...] = ()
        if cfg.search.multi_objective:
            objectives = tuple(
                (
                    f"val/{t.name}/{primary_metric(t.type)}",
                    "max" if higher_is_better(primary_metric(t.type)) else "min",
                )
                for t in self.params.tasks
            )
        return StagePlan("sweep", cfg, cfg.num_samples, objectives=objectives, shown=METRIC)

    def trials(self, data: TrainingData, runtime: TrialRuntime) -> TrialSpec:
        """Every task in each trial; batch sizes fit for the rows labelled for any task."""
        names = [t.name for t in self.params.tasks]
        return TrialSpec(
            base=trial_base(self.params, self.params.sweep.epochs),
            # The batch-size rule of the baselines, on the rows labelled for any task.
            space=with_batch_sizes(self.params.sweep.space, labelled_train_rows(data)),
            tasks=names,
            baseline={t: self.baseline[t] for t in names},
            warm_sources=self.sources,
            warm_default=self.default,
            **runtime,
        )

    def publish(self, done: Searched) -> SweepOutcome:
        """`trials.parquet`, `finalists/` and `best.yaml`; the best Delta-m and trial logged."""
        session, spec, records, frame = done.session, done.spec, done.records, done.frame
        best = best_record(records, METRIC, "max")
        best_params = spec.params(best.config)
        out_dir = self.out_dir
        with atomic_path(out_dir) as tmp:
            tmp.mkdir(parents=True)
            frame.to_parquet(tmp / "trials.parquet", index=False)
            top = ranked(records, METRIC, "max")[:FINALISTS]
            write_finalists(
                tmp / "finalists", [(spec.params(r.config), r) for r in top], METRIC, "the sweep"
            )
            write_params(
                tmp / "best.yaml",
                best_params,
                f"The sweep's best multi-task config: trial {best.trial_id}, validation "
                f"Delta-m {best.result[METRIC]:+.4f} (fraction) against the baselines.\n"
                f"Train it: multitune train --params {out_dir}/best.yaml --out <dir>",
            )
        session.parent.log_metrics({"best/delta_m": best.result[METRIC]})
        session.parent.set_tags({"best_trial_id": best.trial_id})
        statuses = frame["status"].value_counts().to_dict() if len(frame) else {}
        return SweepOutcome(
            best_trial=best.trial_id,
            best_delta_m=float(best.result[METRIC]),
            trials=len(records),
            statuses={str(k): int(v) for k, v in statuses.items()},
            resumed=session.resumed,
        )


def _warm_sources(params: Params, baselines_dir: Path) -> tuple[dict[str, WarmSource], str | None]:
    """The single-task models the search may warm-start from, and the default task.

    Raises:
        UserError: the space may warm-start from a task the baselines stage saved no model
            of (it ran with another space).
    """
    wanted = searched_tasks(params)
    if not wanted:
        return {}, None
    sources = load_sources(baselines_dir)
    summary = json.loads((baselines_dir / SUMMARY).read_text()).get("warm_start", {})
    default = summary.get("default")
    missing = sorted({t or default or "(the default task)" for t in wanted} - set(sources))
    if missing:
        raise UserError(
            f"{baselines_dir}: no single-task model of {', '.join(missing)} to warm-start "
            "from (the baselines ran before the sweep could warm-start); rerun "
            "`dvc repro baselines`"
        )
    return sources, default
