"""The baselines stage: one single-task model per task, tuned with the same machinery.

Each task gets its own search over `sweep.space` without the multi-task-only knobs
(weighting, sampling, sharing method, freezing), on a plain trunk, with as many trials as the
sweep by default (equal search effort) and the same early stopping. The space is made fit for
one task (`baseline_space`): batch sizes by the rule the sweep follows too, from the task's
labelled train rows (`multitune.tuning.space.batch_size_choices`), class weighting none /
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
from multitune.config.space import Choice, Fixed, MethodKnob, knob_label
from multitune.config.tasks import TaskConfig
from multitune.config.tuning import MULTITASK_ONLY, BaselinesConfig, SearchSpace
from multitune.errors import UserError
from multitune.io import atomic_path, write_json
from multitune.training import higher_is_better, primary_metric
from multitune.training.loop import labelled_train_rows
from multitune.tuning.outputs import (
    FINALISTS,
    best_record,
    ranked,
    write_finalists,
    write_params,
)
from multitune.tuning.runner import SearchJob, TrialRecord
from multitune.tuning.session import stage_session
from multitune.tuning.space import with_batch_sizes
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
    cfg = params.baselines
    names = [t.name for t in params.tasks]
    trials_per_task = cfg.trials_per_task(params.sweep)
    with stage_session(
        "baselines", params, cfg, data_dir=data_dir, project_root=project_root
    ) as session:
        spaces = {
            t.name: baseline_space(params, t, labelled_train_rows(session.data, [t.name]), cfg)
            for t in params.tasks
        }
        spec = TrialSpec(
            base=baseline_base(params, cfg.sharing),
            space=params.sweep.space.without(MULTITASK_ONLY),
            tasks=names,
            device=session.device(cfg),
            threads=max(1, int(cfg.resources.cpu)),
            seed=params.train.seed,
            checkpoint_every=cfg.checkpoint_every,
            task_spaces={t: space for t, (space, _) in spaces.items()},
            first_points={t: points for t, (_, points) in spaces.items()},
        )
        job = SearchJob(
            name=session.experiment,
            label="baselines",
            spec=spec,
            budget=cfg,
            num_samples=trials_per_task,
            max_epochs=spec.base["train"]["epochs"],
            stage="baselines",
            per_task=True,
            shown="",  # scores of different tasks do not compare
        )
        records, frame = session.search(job, cfg)
        # A tag, not a param: a grown search changes it on the same parent run.
        session.parent.set_tags({"trials_per_task": str(trials_per_task)})
        run_ids = dict(zip(frame["trial_id"], frame["mlflow_run_id"], strict=True))
        summary: dict[str, Any] = {}
        winners: dict[str, tuple[Params, str]] = {}
        finalists: dict[str, list[tuple[Params, TrialRecord]]] = {}
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
                "steps": int(best.result.get("steps", 0)),
                "converged": bool(best.result.get("converged", 0)),
            }
            winners[task.name] = (spec.params(best.config), best.trial_id)
            finalists[task.name] = [
                (spec.params(r.config), r) for r in ranked(mine, SCORE, "max")[:FINALISTS]
            ]
            best_values[task.name] = val.get(metric, float("nan"))
            session.parent.log_metrics({f"best/{task.name}/{metric}": best_values[task.name]})
        warm_tasks = searched_tasks(params)
        default = default_task(params, session.data) if warm_tasks else ""
        sources = {
            task: source_params(task, records, spec, params)
            for task in sorted({t or default for t in warm_tasks})
        }
        with atomic_path(out_dir) as tmp:
            tmp.mkdir(parents=True)
            warm = save_sources(
                sources, session.data, tmp, seed=params.train.seed, device=spec.device
            )
            document = {"tasks": summary}
            if warm:
                document["warm_start"] = {"default": default, "models": warm}
            _write_outputs(tmp, out_dir, document, winners, frame)
            for name, ranked_configs in finalists.items():
                write_finalists(
                    tmp / "finalists" / name, ranked_configs, SCORE, f"task {name}'s baselines"
                )
    return BaselinesOutcome(best=best_values, trials=len(records), resumed=session.resumed)


def _write_outputs(
    tmp: Path,
    out_dir: Path,
    document: dict[str, Any],
    winners: dict[str, tuple[Params, str]],
    frame: pd.DataFrame,
) -> None:
    for task, (params, trial_id) in winners.items():
        write_params(
            tmp / f"{task}.yaml",
            params,
            f"The best single-task config for task {task} (baselines trial {trial_id}).\n"
            f"Train it: multitune train --params {out_dir}/{task}.yaml --out <dir>",
        )
    write_json(tmp / SUMMARY, document)
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
