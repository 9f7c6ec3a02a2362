"""The search pieces without a cluster: per-task dealing, objectives, ASHA's horizon."""

from __future__ import annotations

from pathlib import Path

from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import Searcher

from multitune.config import validate_params
from multitune.config.tuning import MULTITASK_ONLY
from multitune.tuning.per_task import TaskASHA, TaskSearch
from multitune.tuning.runner import SearchJob, _scheduler, _searcher
from multitune.tuning.state import back_up, restore_backups
from multitune.tuning.trial import TrialSpec, trial_base

from .project import tiny_params


def _job(tmp_path: Path, **kw: object) -> SearchJob:
    params = validate_params(tiny_params(tmp_path))
    per_task = bool(kw.pop("per_task", False))
    space = params.sweep.space.without(MULTITASK_ONLY) if per_task else params.sweep.space
    spec = TrialSpec(trial_base(params, 3), space, [t.name for t in params.tasks])
    return SearchJob(
        name="x",
        label="x",
        spec=spec,
        budget=params.sweep,
        num_samples=2,
        max_epochs=3,
        stage="sweep",
        per_task=per_task,
        **kw,  # type: ignore[arg-type]
    )


def test_baseline_trials_are_dealt_evenly_over_tasks_then_finish(tmp_path: Path) -> None:
    job = _job(tmp_path, per_task=True)
    search = _searcher(job)
    assert isinstance(search, TaskSearch) and job.total == 6
    configs = [search.suggest(f"t{i}") for i in range(6)]
    assert sorted(c["task"] for c in configs) == ["bin", "bin", "cls", "cls", "reg", "reg"]
    assert all("lr" in c and not any(k.startswith("weighting") for k in c) for c in configs)
    assert search.suggest("t6") == Searcher.FINISHED
    search.on_trial_complete("t0", {"score": 0.5})
    saved = tmp_path / "searcher.pkl"
    search.save(str(saved))
    again = _searcher(job)
    again.restore(str(saved))
    assert again.count == search.count and again.assigned == search.assigned
    assert isinstance(_scheduler(job), TaskASHA)


def test_multi_objective_searches_each_task_score(tmp_path: Path) -> None:
    objectives = (("val/bin/auroc", "max"), ("val/reg/r2", "max"))
    search = _searcher(_job(tmp_path, objectives=objectives))
    assert search.metric == ["val/bin/auroc", "val/reg/r2"]
    scheduler = _scheduler(_job(tmp_path, objectives=objectives))
    assert isinstance(scheduler, ASHAScheduler) and scheduler.metric == "score"


def test_asha_lets_a_trial_reach_its_last_epoch(tmp_path: Path) -> None:
    scheduler = _scheduler(_job(tmp_path))
    assert isinstance(scheduler, ASHAScheduler)
    assert scheduler._max_t == 4  # max_epochs + 1: the final report is not cut off


def test_a_truncated_state_file_is_restored_from_its_backup(tmp_path: Path) -> None:
    state = tmp_path / "experiment_state-2026.json"
    state.write_text('{"trial_data": []}')
    back_up(tmp_path)
    state.write_text('{"trial_da')  # the driver was killed mid-copy
    assert restore_backups(tmp_path) == [state.name]
    assert state.read_text() == '{"trial_data": []}'
    assert restore_backups(tmp_path) == []  # intact files are left alone
