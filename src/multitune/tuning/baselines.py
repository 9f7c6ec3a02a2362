"""The baselines stage: one single-task model per task, tuned with the same machinery.

Each task gets its own search over `sweep.space` without the multi-task-only knobs
(weighting, sampling, sharing method, freezing), on a plain trunk, with as many trials as the
sweep by default (equal search effort) and the same early stopping. The space is made fit for
one task (`baseline_space`): batch sizes by the rule the sweep follows too, from the task's
labelled train rows (`multitune.config.space.batch_size_choices`), class weighting none /
balanced, and a linear model (no hidden layer) offered and tried first.
Written to `results/baselines/`: `baselines.json` (per task: best config file, its
validation metrics, the metric searched), `<task>.yaml` (a full params file of that model)
and `trials.parquet` (every trial, with a `task` column). When the sweep may warm-start from
the single-task models, also `models/<task>/` (see `multitune.tuning.warm`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from multitune.config import Params
from multitune.config.model import WEIGHTED_TASK_TYPES
from multitune.config.space import (
    MULTITASK_ONLY,
    Choice,
    Fixed,
    MethodKnob,
    SearchSpace,
    knob_label,
    with_batch_sizes,
)
from multitune.config.tasks import TaskConfig
from multitune.config.tuning import BaselinesConfig
from multitune.errors import UserError
from multitune.io import atomic_path, write_json
from multitune.training import TrainingData, higher_is_better, primary_metric
from multitune.training.loop import labelled_train_rows
from multitune.tuning.outputs import (
    FINALISTS,
    best_record,
    ranked,
    write_finalists,
    write_params,
)
from multitune.tuning.runner import TrialRecord
from multitune.tuning.stage import Searched, StagePlan, TrialRuntime, run_stage
from multitune.tuning.trial import SCORE, TASK_KEY, TrialSpec, trial_base, unflatten_metrics
from multitune.tuning.warm import default_task, save_sources, searched_tasks, source_params

SUMMARY = "baselines.json"
CATEGORICAL = WEIGHTED_TASK_TYPES


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


def baseline_space(
    params: Params, task: TaskConfig, rows: int, cfg: BaselinesConfig
) -> tuple[SearchSpace, list[dict[str, Any]]]:
    """One task's search space and the points tried first (the linear model, with each class
    weighting searched).

    Args:
        params: The validated params (`sweep.space` is the starting point).
        task: The task.
        rows: Its labelled train rows (they decide the batch sizes, unless the space does).
        cfg: The baselines section.

    Returns:
        The space, and the Optuna parameter values of the points to try first.
    """
    space = with_batch_sizes(params.sweep.space.without(MULTITASK_ONLY), rows)
    update: dict[str, Any] = {}
    if task.type not in CATEGORICAL:
        update["class_weighting"] = None  # no classes to weigh
    elif cfg.class_weighting and space.class_weighting is None:
        update["class_weighting"] = Choice(choice=["none", "balanced"])
    points: list[dict[str, Any]] = []
    if cfg.linear_option:
        layers = _choices(space.encoder_layers, params.model.encoder.layers)
        trunks = _choices(space.trunk, params.model.sharing.hidden)  # type: ignore[attr-defined]
        fusions = (
            [o.name for o in space.fusion.options]
            if isinstance(space.fusion, MethodKnob)
            else [params.model.fusion.name]  # type: ignore[attr-defined]
        )
        # Linear needs concat fusion (the others mix modalities non-linearly): without it
        # among the fusions the search may try, no linear option is offered.
        if layers is not None and trunks is not None and "concat" in fusions:
            update["encoder_layers"] = Choice(choice=_with(layers, 0))
            update["trunk"] = Choice(choice=_with(trunks, []))
            point = {"encoder_layers": 0, "trunk": knob_label([])}
            if len(fusions) > 1:
                point["fusion"] = "concat"
            # Both class weightings of the linear model when both are searched: on skewed
            # classes, macro-F1 often turns on the weighting alone.
            weighting = update.get("class_weighting", space.class_weighting)
            options = weighting.choice if isinstance(weighting, Choice) else [None]
            points += [
                point if w is None else {**point, "class_weighting": knob_label(w)}
                for w in options
            ]
    return space.model_copy(update=update), points


def _choices(knob: Any, default: Any) -> list[Any] | None:
    """A value knob's options (None for a range, which cannot take a linear option)."""
    if knob is None:
        return [default]
    if isinstance(knob, Choice):
        return list(knob.choice)
    if isinstance(knob, Fixed):
        return [knob.root]
    return None


def _with(values: list[Any], extra: Any) -> list[Any]:
    return [extra, *[v for v in values if v != extra]]


def run_baselines(
    params: Params, *, data_dir: Path, out_dir: Path, project_root: Path
) -> BaselinesOutcome:
    """Tune a single-task model per task and write `out_dir` (see the module doc).

    Raises:
        UserError: tracking unreachable, cluster unable to run trials, or every trial of a
            task failed.
    """
    return run_stage(
        _Baselines(params, out_dir), params, data_dir=data_dir, project_root=project_root
    )


@dataclass(frozen=True)
class _Baselines:
    """The baselines as a search stage (`multitune.tuning.stage`): one search per task."""

    params: Params
    out_dir: Path

    @property
    def plan(self) -> StagePlan:
        """`baselines.num_samples` trials per task (null: the sweep's), no score shown."""
        cfg = self.params.baselines
        trials_per_task = cfg.trials_per_task(self.params.sweep)
        # shown "": scores of different tasks do not compare.
        return StagePlan("baselines", cfg, trials_per_task, per_task=True, shown="")

    def trials(self, data: TrainingData, runtime: TrialRuntime) -> TrialSpec:
        """A trial trains one task, on its own space (`baseline_space`)."""
        params, cfg = self.params, self.params.baselines
        spaces = {
            t.name: baseline_space(params, t, labelled_train_rows(data, [t.name]), cfg)
            for t in params.tasks
        }
        return TrialSpec(
            base=baseline_base(params, cfg.sharing),
            space=params.sweep.space.without(MULTITASK_ONLY),
            tasks=[t.name for t in params.tasks],
            task_spaces={t: space for t, (space, _) in spaces.items()},
            first_points={t: points for t, (_, points) in spaces.items()},
            **runtime,
        )

    def publish(self, done: Searched) -> BaselinesOutcome:
        """Each task's best logged; the files of the module doc, the warm-start models too."""
        session, spec, records, frame = done.session, done.spec, done.records, done.frame
        params = self.params
        # A tag, not a param: a grown search changes it on the same parent run.
        session.parent.set_tags({"trials_per_task": str(self.plan.num_samples)})
        run_ids = dict(zip(frame["trial_id"], frame["mlflow_run_id"], strict=True))
        bests: dict[str, _TaskBest] = {}
        for task in params.tasks:
            best = bests[task.name] = _task_best(task, records, spec, run_ids)
            session.parent.log_metrics({f"best/{task.name}/{best.metric}": best.value})
        warm_tasks = searched_tasks(params)
        default = default_task(params, session.data) if warm_tasks else ""
        sources = {
            task: source_params(task, records, spec, params)
            for task in sorted({t or default for t in warm_tasks})
        }
        with atomic_path(self.out_dir) as tmp:
            tmp.mkdir(parents=True)
            warm = save_sources(
                sources, session.data, tmp, seed=params.train.seed, device=spec.device
            )
            document: dict[str, Any] = {"tasks": {t: b.summary for t, b in bests.items()}}
            if warm:
                document["warm_start"] = {"default": default, "models": warm}
            _write_outputs(tmp, self.out_dir, document, bests, frame)
        return BaselinesOutcome(
            best={t: b.value for t, b in bests.items()},
            trials=len(records),
            resumed=session.resumed,
        )


@dataclass(frozen=True)
class _TaskBest:
    """One task's search, as the outputs need it.

    Attributes:
        metric: The task's primary metric.
        value: The best trial's validation value of it.
        summary: The task's entry in `baselines.json`.
        winner: The best trial's params, and its id.
        finalists: The best trials' params, best first.
    """

    metric: str
    value: float
    summary: dict[str, Any]
    winner: tuple[Params, str]
    finalists: list[tuple[Params, TrialRecord]]


def _task_best(
    task: TaskConfig, records: list[TrialRecord], spec: TrialSpec, run_ids: dict[str, Any]
) -> _TaskBest:
    """The best of `task`'s trials (`records` holds every task's).

    Raises:
        UserError: every trial of the task failed.
    """
    metric = primary_metric(task.type)
    mine = [r for r in records if r.config.get(TASK_KEY) == task.name]
    best = best_record(mine, SCORE, "max")
    val = unflatten_metrics("val", best.result).get(task.name, {})
    summary = {
        "params": f"{task.name}.yaml",
        "metric": metric,
        "higher_is_better": higher_is_better(metric),
        "val": val,
        "trial_id": best.trial_id,
        "mlflow_run_id": run_ids.get(best.trial_id),
        "epochs_run": int(best.result.get("epochs_run", best.result.get("epoch", 0))),
        "steps": int(best.result.get("steps", 0)),
        "converged": bool(best.result.get("converged", 0)),
    }
    return _TaskBest(
        metric=metric,
        value=val.get(metric, float("nan")),
        summary=summary,
        winner=(spec.params(best.config), best.trial_id),
        finalists=[(spec.params(r.config), r) for r in ranked(mine, SCORE, "max")[:FINALISTS]],
    )


def _write_outputs(
    tmp: Path,
    out_dir: Path,
    document: dict[str, Any],
    bests: dict[str, _TaskBest],
    frame: pd.DataFrame,
) -> None:
    for task, best in bests.items():
        params, trial_id = best.winner
        write_params(
            tmp / f"{task}.yaml",
            params,
            f"The best single-task config for task {task} (baselines trial {trial_id}).\n"
            f"Train it: multitune train --params {out_dir}/{task}.yaml --out <dir>",
        )
    write_json(tmp / SUMMARY, document)
    frame.to_parquet(tmp / "trials.parquet", index=False)
    for task, best in bests.items():
        write_finalists(
            tmp / "finalists" / task, best.finalists, SCORE, f"task {task}'s baselines"
        )


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
