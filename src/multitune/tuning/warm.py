"""Warm starts from the tuned single-task models, from the baselines stage to sweep trials.

A `warm_start` freezing policy with a `task` (or, in `sweep.space`, none: the task with the
most labelled train rows) starts the multi-task network from that task's tuned single-task
model. The pieces:

* the baselines stage asks `searched_tasks` which tasks the search may warm-start from, and
  saves for each the best single-task config that has a trunk (`source_params`), retrained
  (`save_sources`), in `results/baselines/models/<task>/`. A linear model, the usual winner
  on small tasks, has no shared layers to start from; when no trial of the task had a
  trunk, its best config gets `model.sharing.hidden`;
* the sweep reads them back (`load_sources`): the weights travel with the trial spec, so a
  trial on another node needs no shared disk;
* a trial that samples the warm start takes the saved model's encoders, fusion and trunk
  (`multitune.tuning.trial.adopt_warm_start`): the network it starts from, so every shared
  weight has a place to go. The knobs that would have shaped them (fusion, sharing, trunk,
  encoder size) do not apply to that trial; its `best.yaml` records what it trained.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from multitune.config import Params
from multitune.config.methods.freezing import WarmStartConfig
from multitune.config.space import Choice, Fixed, MethodKnob, knob_values
from multitune.errors import UserError
from multitune.training import TrainingData, train
from multitune.tuning.outputs import TrialRecord, best_record
from multitune.tuning.trial import SCORE, WARM_START, TrialSpec, WarmSource

MODELS = "models"
"""Under the baselines' output folder: one saved model per warm-start task."""

NAME = WARM_START
WEIGHTS = "model.safetensors"


def searched_tasks(params: Params) -> set[str | None]:
    """The tasks whose single-task model a sweep trial may warm-start from (None: the
    default task, see `default_task`); empty when neither `train.freezing` nor
    `sweep.space.freezing` can pick a warm start from a task."""
    tasks: set[str | None] = set()
    base: object = params.train.freezing
    if isinstance(base, WarmStartConfig) and base.path is None:
        tasks.add(base.task)
    knob = params.sweep.space.freezing
    if isinstance(knob, MethodKnob):
        for option in knob.options:
            if option.name != NAME or "path" in option.params:
                continue
            task = option.params.get("task")
            if task is None:
                carried = base.task if isinstance(base, WarmStartConfig) else None
                tasks.add(carried)
            elif isinstance(task, Choice | Fixed):
                tasks.update(knob_values(task))
    return tasks


def default_task(params: Params, data: TrainingData) -> str:
    """The task with the most labelled train rows (the first such, in params order)."""
    return max((t.name for t in params.tasks), key=data.train_rows)


def source_params(
    task: str, records: Sequence[TrialRecord], spec: TrialSpec, params: Params
) -> tuple[Params, str | None]:
    """The best single-task config of `task` that has a trunk, and its trial id (None when
    no trial had one and the best config was given `model.sharing.hidden`).

    Raises:
        UserError: no trial of the task finished, or no trunk is configured to give it.
    """
    mine = [r for r in records if r.config.get("task") == task]
    with_trunk = [r for r in mine if _trunk(spec.params(r.config))]
    if with_trunk:
        best = best_record(with_trunk, SCORE, "max")
        return spec.params(best.config), best.trial_id
    hidden = list(getattr(params.model.sharing, "hidden", []) or [])
    if not hidden:
        raise UserError(
            f"sweep.space.freezing: a warm start from task {task} needs a single-task model "
            "with a trunk, but no baseline trial had one and model.sharing.hidden is empty; "
            "set model.sharing.hidden (e.g. [256]) or drop warm_start from the space"
        )
    winner = spec.params(best_record(mine, SCORE, "max").config)
    sharing = winner.model.sharing.model_copy(update={"hidden": hidden})  # type: ignore[attr-defined]
    model = winner.model.model_copy(update={"sharing": sharing})
    return winner.model_copy(update={"model": model}), None


def _trunk(params: Params) -> bool:
    return bool(getattr(params.model.sharing, "hidden", None))


def save_sources(
    sources: Mapping[str, tuple[Params, str | None]],
    data: TrainingData,
    out_dir: Path,
    *,
    seed: int,
    device: str,
) -> dict[str, Any]:
    """Retrain each task's source config and save it in `out_dir/models/<task>`.

    Returns:
        Per task: the trial it came from, its validation metrics and its trunk (for
        `baselines.json`).
    """
    summary: dict[str, Any] = {}
    for task, (config, trial_id) in sources.items():
        result = train(config, data, tasks=[task], seed=seed, device=device)
        result.save(out_dir / MODELS / task)
        summary[task] = {
            "trial_id": trial_id,
            "trunk": list(config.model.sharing.hidden),  # type: ignore[attr-defined]
            "val": result.metrics["val"].get(task, {}),
            "epochs_run": result.epochs_run,
        }
    return summary


def load_sources(baselines_dir: Path) -> dict[str, WarmSource]:
    """The saved warm-start models under `baselines_dir/models` (none: empty)."""
    root = baselines_dir / MODELS
    if not root.is_dir():
        return {}
    out: dict[str, WarmSource] = {}
    for folder in sorted(p for p in root.iterdir() if (p / WEIGHTS).is_file()):
        spec = json.loads((folder / "model.json").read_text())
        weights = (folder / WEIGHTS).read_bytes()
        out[folder.name] = WarmSource(str(folder), dict(spec["model_config"]), weights)
    return out
