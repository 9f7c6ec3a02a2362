"""Run one search: Ray Tune `Tuner` + OptunaSearch (seeded TPE) + ASHA, resumable, growable.

`run_search` starts a new experiment, or restores an interrupted one from `storage_path`
(finished trials are kept, unfinished ones continue from their last checkpoint), and returns
one record per trial; `read_search` reads a finished one without starting Tune.

A search grows in parts (`multitune.tuning.session` keeps the list): Tune cannot add trials
to a finished experiment (ray-project/ray#42221), so more trials run as a new experiment
whose `SearchJob.history` holds the earlier parts' trials. Its Optuna studies start with
them as completed trials (`_history_storage`), so TPE continues from what was learned
instead of sampling its start-up points again, and it runs only the trials still owed.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from multitune import tracking
from multitune.config.space import SearchSpace
from multitune.config.tuning import AshaConfig, BaselinesConfig, SweepConfig
from multitune.training import TrainingData
from multitune.tuning.callbacks import (
    Progress,
    TrialErrors,
    TrialRuns,
    trial_error,
)
from multitune.tuning.per_task import TaskASHA, TaskSearch
from multitune.tuning.space import suggest
from multitune.tuning.state import StateBackups, restore_backups, restore_checkpoints
from multitune.tuning.trainable import run_trial
from multitune.tuning.trial import (
    FAILED_SCORE,
    SCORE,
    TASK_KEY,
    TrialSpec,
    trial_score,
    unflatten_metrics,
)

logger = logging.getLogger(__name__)

# Tune snapshots its experiment state this often (s): a killed driver loses at most this.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")
# Tune's own console output (experiment boxes, paths) gives way to the progress callback.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Keeping two checkpoints per trial forces a state snapshot every second epoch: wanted.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


@dataclass(frozen=True)
class SearchJob:
    """One Tune experiment. Every trial reports `score` (higher is better) for the search.

    Attributes:
        name: The experiment's directory name under the storage path.
        label: Shown in progress lines and trial run names.
        spec: What every trial shares.
        budget: Search, scheduler, resources, concurrency and retries.
        num_samples: Trials the search holds in the end (per task when `per_task`), this
            experiment's and its `history`'s together.
        max_epochs: The longest a trial trains (ASHA's horizon).
        stage: The MLflow stage tag of trial runs.
        per_task: One independent search per task of `spec.tasks` (single-task baselines).
        objectives: `(metric, mode)` pairs for a multi-objective search, else empty.
        shown: How progress lines name the score.
        history: The trials of the search's earlier parts (a grown search), oldest first.
    """

    name: str
    label: str
    spec: TrialSpec
    budget: SweepConfig | BaselinesConfig
    num_samples: int
    max_epochs: int
    stage: str
    per_task: bool = False
    objectives: tuple[tuple[str, str], ...] = ()
    shown: str = SCORE
    history: tuple[TrialRecord, ...] = ()

    @property
    def quotas(self) -> dict[str, int]:
        """Trials this experiment runs: per task, or under "" for one search."""
        if not self.per_task:
            return {"": max(0, self.num_samples - len(self.history))}
        done = Counter(r.config.get(TASK_KEY) for r in self.history)
        return {t: max(0, self.num_samples - done[t]) for t in self.spec.tasks}

    @property
    def total(self) -> int:
        """Trials in the experiment."""
        return sum(self.quotas.values())

    def kept(self, records: Sequence[TrialRecord]) -> list[TrialRecord]:
        """The search's first `num_samples` trials (per task): a search asked for fewer
        trials than it holds answers with those it ran first, training nothing."""
        seen: Counter[object] = Counter()
        out = []
        for record in records:
            key = record.config.get(TASK_KEY) if self.per_task else ""
            seen[key] += 1
            if seen[key] <= self.num_samples:
                out.append(record)
        return out


@dataclass(frozen=True)
class TrialRecord:
    """One trial after the search.

    Attributes:
        trial_id: Tune's id (also the MLflow run's `trial_id` tag).
        status: `completed` (trained to its end), `stopped` (by the scheduler) or `failed`.
        config: The sampled values by parameter name.
        result: The last reported metrics.
        error: A failed trial's error: a `UserError`'s one line, else the traceback's last
            lines.
        config_error: Why the sampled values do not validate (`TrialSpec.config_error`), for
            a trial that failed on them.
    """

    trial_id: str
    status: str
    config: dict[str, Any]
    result: dict[str, Any]
    error: str | None = None
    config_error: str | None = None


def run_search(
    job: SearchJob,
    data: TrainingData,
    *,
    storage_path: str,
    concurrency: int,
    tracker: tracking.Tracking,
    parent_run_id: str,
    run_tags: dict[str, str],
) -> list[TrialRecord]:
    """Run (or resume) the experiment `job.name` under `storage_path`.

    Args:
        job: What to search.
        data: The training data; put into Ray's object store once for all trials.
        storage_path: Tune's storage (absolute path or URI).
        concurrency: Trials at once.
        tracker: The MLflow store trial runs go to.
        parent_run_id: The stage's parent run.
        run_tags: Tags for every trial run (stage, git commit, data hash).

    Returns:
        One record per trial, in Tune's order. The first trial whose sampled values do not
        validate stops the search (`TrialErrors`); its record has `config_error`.
    """
    experiment = f"{storage_path.rstrip('/')}/{job.name}"
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, data=data, spec=job.spec),
        {"cpu": job.budget.resources.cpu, "gpu": job.budget.resources.gpu},
    )
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(max(1, concurrency))
    local = local_dir(experiment)
    if local is not None and local.is_dir():
        restore_backups(local)
    if tune.Tuner.can_restore(experiment):
        logger.info("resuming the interrupted experiment %s", experiment)
        if local is not None:
            restore_checkpoints(local)
        tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True)
    else:
        tags = {**run_tags, tracking.tags.STAGE: job.stage}
        runs = TrialRuns(tracker, parent_run_id, tags, job.spec, name_prefix=job.label)
        tuner = _new_tuner(job, trainable, storage_path, concurrency, runs, local)
    # Ray's reports of trials' user errors are kept quiet by the caller, `stage_session`
    # (`quiet_user_errors`), for as long as its Ray runs.
    tuner.fit()
    return read_search(storage_path, job.name, job.spec)


def _new_tuner(
    job: SearchJob,
    trainable: Any,
    storage_path: str,
    concurrency: int,
    runs: TrialRuns,
    local: Path | None,
) -> tune.Tuner:
    """A new experiment of `job`: its searcher, scheduler, stopper and callbacks (`runs`
    logs each trial to MLflow; `local`, the experiment's local folder, gets state backups)."""
    errors = TrialErrors(job.spec, job.label)
    shown = f"{job.label} ({len(job.history)} kept, more:)" if job.history else job.label
    callbacks: list[tune.Callback] = [runs, Progress(shown, job.total, SCORE, job.shown), errors]
    if local is not None:
        callbacks.append(StateBackups(str(local)))
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=None if job.objectives else SCORE,
            mode=None if job.objectives else "max",
            search_alg=_searcher(job),
            scheduler=_scheduler(job),
            num_samples=job.total,
            max_concurrent_trials=max(1, concurrency),
            reuse_actors=True,
            trial_dirname_creator=_dirname,
        ),
        run_config=tune.RunConfig(
            name=job.name,
            storage_path=storage_path,
            callbacks=callbacks,
            stop=errors,
            failure_config=tune.FailureConfig(max_failures=job.budget.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=0,
        ),
    )


def read_search(storage_path: str, name: str, spec: TrialSpec) -> list[TrialRecord]:
    """The trials of the experiment `name` under `storage_path`, in Tune's order."""
    experiment = f"{storage_path.rstrip('/')}/{name}"
    return [_record(t, spec) for t in tune.ExperimentAnalysis(experiment).trials]


def _searcher(job: SearchJob) -> Searcher:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if job.per_task:
        searchers: dict[str, Searcher] = {}
        for i, task in enumerate(job.spec.tasks):
            define = DefineByRun(job.spec.space_for(task), [task])
            history = [r for r in job.history if r.config.get(TASK_KEY) == task]
            searchers[task] = OptunaSearch(
                space=define,
                metric=SCORE,
                mode="max",
                sampler=_sampler(job, offset=i, seen=len(history)),
                # The linear model was tried first in the search's first part.
                points_to_evaluate=None if history else job.spec.first_points.get(task) or None,
                **_history_storage(define, history, [(SCORE, "max")]),
            )
        return TaskSearch(searchers, job.quotas, SCORE, "max")
    define = DefineByRun(job.spec.space, list(job.spec.tasks))
    objectives = list(job.objectives) or [(SCORE, "max")]
    return OptunaSearch(
        space=define,
        metric=[m for m, _ in job.objectives] if job.objectives else SCORE,
        mode=[d for _, d in job.objectives] if job.objectives else "max",
        sampler=_sampler(job, seen=len(job.history)),
        **_history_storage(define, job.history, objectives),
    )


def _sampler(job: SearchJob, offset: int = 0, seen: int = 0) -> optuna.samplers.BaseSampler:
    """Seeded TPE. A grown search's sampler is seeded past its history (`seen` trials), so
    its random start-up draws, if any are left, are not the first part's again."""
    search = job.budget.search
    return optuna.samplers.TPESampler(
        seed=search.seed + offset + seen, n_startup_trials=search.n_startup_trials
    )


def _history_storage(
    define: DefineByRun, history: Sequence[TrialRecord], objectives: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """OptunaSearch's `storage` and `study_name` holding `history` as completed trials
    (none: empty, Optuna's default study).

    Each earlier trial is asked again with its sampled values enqueued, so the space
    (`define`) records the distributions TPE needs, then told its reported value(s). Failed
    trials, and trials that reported no value, carry nothing to learn from and are left out.
    """
    usable = [
        r for r in history if r.status != "failed" and all(m in r.result for m, _ in objectives)
    ]
    if not usable:
        return {}
    storage = optuna.storages.InMemoryStorage()
    name = "multitune-grown"
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=["minimize" if d == "min" else "maximize" for _, d in objectives],
    )
    for record in usable:
        study.enqueue_trial({k: v for k, v in record.config.items() if k != TASK_KEY})
        trial = study.ask()
        define(trial)
        values = [float(record.result[m]) for m, _ in objectives]
        study.tell(trial, values if len(values) > 1 else values[0])
    return {"storage": storage, "study_name": name}


@dataclass(frozen=True)
class DefineByRun:
    """The space as Optuna's define-by-run function (a class: the searcher pickles it)."""

    space: SearchSpace
    tasks: list[str]

    def __call__(self, trial: optuna.Trial) -> None:
        """Sample every knob on `trial`."""
        suggest(self.space, trial, self.tasks)


def _scheduler(job: SearchJob) -> TrialScheduler:
    cfg = job.budget.scheduler
    if not isinstance(cfg, AshaConfig):
        return FIFOScheduler()
    # One epoch past the longest trial: a trial reaching its last epoch is not "stopped" by
    # ASHA before it reports its final (best-epoch) metrics.
    max_t = job.max_epochs + 1
    # Single objective: metric and mode come from TuneConfig; several: ASHA ranks by score.
    own = {"metric": SCORE, "mode": "max"} if job.objectives else {}

    def make() -> TrialScheduler:
        return ASHAScheduler(
            time_attr="epoch",
            max_t=max_t,
            grace_period=min(cfg.grace_period, max_t - 1),
            reduction_factor=cfg.reduction_factor,
            **own,  # type: ignore[arg-type]
        )

    return TaskASHA(make) if job.per_task else make()


def _dirname(trial: Trial) -> str:
    return trial.trial_id


def _record(trial: Trial, spec: TrialSpec) -> TrialRecord:
    result = dict(trial.last_result or {})
    if trial.status == Trial.ERROR:
        return TrialRecord(
            trial.trial_id,
            "failed",
            dict(trial.config),
            result,
            trial_error(trial),
            spec.config_error(trial.config),
        )
    status = "completed" if result.get("final") else "stopped"
    return TrialRecord(trial.trial_id, status, dict(trial.config), _rescored(result, spec))


def _rescored(result: dict[str, Any], spec: TrialSpec) -> dict[str, Any]:
    """A multi-task trial's score against the search's current baselines.

    A grown sweep keeps trials scored against the baselines of its time; the baselines may
    have grown since. Delta-m is recomputed from the trial's reported validation metrics
    (the same value when the baselines did not change); a trial whose score was undefined
    keeps it.
    """
    if not spec.baseline or result.get(SCORE, FAILED_SCORE) == FAILED_SCORE:
        return result
    types = {t["name"]: t["type"] for t in spec.base["tasks"]}
    score = trial_score(unflatten_metrics("val", result), types, spec.baseline)
    return {**result, SCORE: score, "delta_m": score}


def experiment_exists(storage_path: str, name: str) -> bool:
    """Whether an experiment that can be resumed is stored at `storage_path/name`."""
    return bool(tune.Tuner.can_restore(f"{storage_path.rstrip('/')}/{name}"))


def local_dir(storage_path: str) -> Path | None:
    """The storage path as a local directory, or None for a URI (s3://...)."""
    return None if "://" in storage_path else Path(storage_path)
