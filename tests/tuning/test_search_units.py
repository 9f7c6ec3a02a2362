"""The search pieces without a cluster: per-task dealing, objectives, ASHA's horizon."""

from __future__ import annotations

from pathlib import Path

from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import Searcher

from multitune.config import validate_params
from multitune.config.space import MULTITASK_ONLY
from multitune.tuning.per_task import TaskASHA, TaskSearch
from multitune.tuning.runner import SearchJob, TrialRecord, _scheduler, _searcher
from multitune.tuning.state import back_up, restore_backups
from multitune.tuning.trial import TrialSpec, trial_base

from .project import tiny_params


def _job(tmp_path: Path, **kw: object) -> SearchJob:
    params = validate_params(tiny_params(tmp_path))
    per_task = bool(kw.pop("per_task", False))
    num_samples = int(kw.pop("num_samples", 2))  # type: ignore[call-overload]
    space = params.sweep.space.without(MULTITASK_ONLY) if per_task else params.sweep.space
    spec = TrialSpec(trial_base(params, 3), space, [t.name for t in params.tasks])
    return SearchJob(
        name="x",
        label="x",
        spec=spec,
        budget=params.sweep,
        num_samples=num_samples,
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


def test_a_grown_search_runs_only_the_missing_trials_and_learns_from_the_kept_ones(
    tmp_path: Path,
) -> None:
    first = _searcher(_job(tmp_path))
    configs = [first.suggest(f"t{i}") for i in range(2)]
    kept = tuple(
        TrialRecord(f"t{i}", "completed", c, {"score": float(i)}) for i, c in enumerate(configs)
    )
    failed = TrialRecord("t2", "failed", configs[0], {}, error="boom")
    grown = _job(tmp_path, history=(*kept, failed), num_samples=5)
    assert grown.total == 2  # 5 asked, 3 held (a failed trial counts as run)
    search = _searcher(grown)
    study = search._ot_study
    assert [t.value for t in study.trials] == [0.0, 1.0]  # the kept ones, as TPE's history
    assert study.trials[1].params["lr"] == configs[1]["lr"]
    assert search.suggest("t3")["lr"] not in {c["lr"] for c in configs}
    assert grown.kept([*kept, failed]) == [*kept, failed]
    assert _job(tmp_path, num_samples=1).kept(kept) == [kept[0]]  # fewer: the first ones


def test_grown_baselines_deal_each_task_its_missing_trials(tmp_path: Path) -> None:
    history = (
        TrialRecord("a", "completed", {"task": "bin", "lr": 0.002}, {"score": 0.5}),
        TrialRecord("b", "completed", {"task": "bin", "lr": 0.004}, {"score": 0.6}),
        TrialRecord("c", "completed", {"task": "cls", "lr": 0.003}, {"score": 0.1}),
    )
    job = _job(tmp_path, per_task=True, history=history)
    assert job.quotas == {"bin": 0, "cls": 1, "reg": 2}
    search = _searcher(job)
    assert sorted(search.suggest(f"n{i}")["task"] for i in range(3)) == ["cls", "reg", "reg"]
    assert search.suggest("n3") == Searcher.FINISHED
