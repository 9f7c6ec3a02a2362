"""One orchestration for both search stages: `run_stage`.

`run_baselines` and `run_sweep` each describe themselves as a `SearchStage`, and `run_stage`
runs either in four phases:

1. `stage_session`: tracking, the data, Ray, and the search's record (resume, grow, start
   over; `multitune.tuning.session`);
2. `SearchStage.trials`: what every trial shares (params, space, tasks), once the data has
   loaded; where and how trials run (`TrialRuntime`) is the same for both stages;
3. `StageSession.search`: the search `SearchStage.plan` describes, over those trials;
4. `SearchStage.publish`: the stage's outputs, and its best logged to the parent run.

What the stages keep apart, besides what they write: the baselines run one search per task
(`StagePlan.per_task`: trials per task, each task's own space, a linear model tried first)
and do not show a score in progress lines (tasks' scores do not compare); the sweep runs
one search of every task scored by Delta-m against the baselines (re-scored when the
baselines grow, `multitune.tuning.runner`), several objectives when asked, and may
warm-start from the baselines' single-task models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypedDict, TypeVar

import pandas as pd

from multitune.config import Params
from multitune.config.tuning import BaselinesConfig, SweepConfig
from multitune.training import TrainingData
from multitune.tuning.runner import SearchJob, TrialRecord
from multitune.tuning.session import StageSession, stage_session
from multitune.tuning.trial import SCORE, TrialSpec

OutcomeT_co = TypeVar("OutcomeT_co", covariant=True)


@dataclass(frozen=True)
class StagePlan:
    """How a stage searches.

    Attributes:
        name: The stage: its session, its progress lines, its trial runs' names and stage tag.
        budget: Its params section (search, scheduler, resources, retries, epochs).
        num_samples: Trials the search holds (per task when `per_task`).
        per_task: One independent search per task (the single-task baselines).
        objectives: `(metric, mode)` pairs for a multi-objective search, else empty.
        shown: How progress lines name the score ("": they show none).
    """

    name: str
    budget: SweepConfig | BaselinesConfig
    num_samples: int
    per_task: bool = False
    objectives: tuple[tuple[str, str], ...] = ()
    shown: str = SCORE


@dataclass(frozen=True)
class Searched:
    """A stage's search, done: what `SearchStage.publish` makes the outputs from.

    Attributes:
        session: The stage's open session (its parent run, its data, whether it resumed).
        spec: What every trial shared.
        records: The trials, in the order they ran.
        frame: The trials table (`trials.parquet`).
    """

    session: StageSession
    spec: TrialSpec
    records: list[TrialRecord]
    frame: pd.DataFrame


class TrialRuntime(TypedDict):
    """Where and how every trial runs, the same for both stages (`TrialSpec`'s fields)."""

    device: str
    threads: int
    seed: int
    checkpoint_every: int


class SearchStage(Protocol[OutcomeT_co]):
    """A search stage: what it searches, and what it makes of the trials."""

    @property
    def plan(self) -> StagePlan:
        """How it searches."""
        ...

    def trials(self, data: TrainingData, runtime: TrialRuntime) -> TrialSpec:
        """What every trial shares, given the loaded data (`runtime` goes in unchanged)."""
        ...

    def publish(self, done: Searched) -> OutcomeT_co:
        """Write the outputs from the trials of `done`, log the best to its session's parent
        run, and say what came out.

        Raises:
            UserError: every trial (of a task) failed.
        """
        ...


def run_stage(
    stage: SearchStage[OutcomeT_co], params: Params, *, data_dir: Path, project_root: Path
) -> OutcomeT_co:
    """Run a search stage: open its session, define its trials, search, publish.

    Raises:
        UserError: tracking unreachable, cluster unable to run the trials, data missing, a
            trial's sampled values invalid, or every trial failed.
    """
    plan = stage.plan
    with stage_session(
        plan.name, params, plan.budget, data_dir=data_dir, project_root=project_root
    ) as session:
        spec = stage.trials(session.data, trial_runtime(params, plan.budget))
        records, frame = session.search(search_job(plan, spec, session.experiment), plan.budget)
        return stage.publish(Searched(session, spec, records, frame))


def trial_runtime(params: Params, budget: SweepConfig | BaselinesConfig) -> TrialRuntime:
    """Trials train on a GPU only when they reserve one, with a thread per reserved CPU."""
    return TrialRuntime(
        device="cuda" if budget.resources.gpu > 0 else "cpu",
        threads=max(1, int(budget.resources.cpu)),
        seed=params.train.seed,
        checkpoint_every=budget.checkpoint_every,
    )


def search_job(plan: StagePlan, spec: TrialSpec, experiment: str) -> SearchJob:
    """The search of `plan` over `spec`'s trials, as the Tune experiment `experiment`."""
    return SearchJob(
        name=experiment,
        label=plan.name,
        spec=spec,
        budget=plan.budget,
        num_samples=plan.num_samples,
        max_epochs=spec.base["train"]["epochs"],
        stage=plan.name,
        per_task=plan.per_task,
        objectives=plan.objectives,
        shown=plan.shown,
    )
