"""The baselines stage killed (SIGKILL, no cleanup) mid-search, or once it is done, resumes:
the rerun trains only the trials that had not finished, the store holds one FINISHED run per
trial and nothing left RUNNING, and the stage's outputs come out whole."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from multitune.config import load_params
from multitune.tuning.state import restore_backups

from .kill import all_runs, finished_children, killed, ready_to_kill, run_stage, stage_command
from .project import TASKS, tiny_params, write_project

STAGE = "baselines"
SAMPLES = 2  # per task
TRIALS = SAMPLES * len(TASKS)
OUT = "results/baselines"


def _project(root: Path) -> list[str]:
    """The tiny project with its own store and Tune storage; the stage's command line."""
    write_project(root)
    raw = tiny_params(root)
    raw["mlflow"] = {"tracking_uri": "sqlite:///resume.db", "experiment": "tests"}
    # Epochs enough that every trial checkpoints several times (every 3rd epoch), each
    # second checkpoint forcing a state snapshot, and lasts long enough to be killed in.
    raw["train"] |= {"epochs": 30, "patience": 30}
    raw["baselines"] |= {"num_samples": SAMPLES}
    raw["sweep"] |= {"storage_path": "resume_results"}
    (root / "resume.yaml").write_text(json.dumps(raw))
    return stage_command(STAGE, "resume.yaml", OUT)


def _state(root: Path) -> dict[str, Any]:
    """The stage's own resume record (`multitune.tuning.session`)."""
    (path,) = (root / "resume_results").glob(f"{STAGE}-*.multitune.json")
    return dict(json.loads(path.read_text()))


def _outputs(root: Path) -> set[str]:
    return {str(p.relative_to(root / OUT)) for p in (root / OUT).rglob("*") if p.is_file()}


def _check_store_and_outputs(root: Path, rerun_stderr: str) -> dict[str, Any]:
    """What a user checks after the rerun: one FINISHED run per trial, nothing RUNNING, one
    parent run, and outputs that name every trial. Returns the FINISHED runs by trial id."""
    runs = all_runs(root / "resume.db")
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"], "left RUNNING"
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [p.info.status for p in parents] == ["FINISHED"]  # the attempt, resumed
    finished = Counter(
        r.data.tags["trial_id"]
        for r in runs
        if "mlflow.parentRunId" in r.data.tags
        and r.info.status == "FINISHED"
        and r.info.lifecycle_stage == "active"
    )
    trials = pd.read_parquet(root / OUT / "trials.parquet")
    assert len(trials) == TRIALS and trials["trial_id"].is_unique
    assert set(finished) == set(trials["trial_id"]), rerun_stderr[-4000:]
    assert set(finished.values()) == {1}, "a trial has more than one FINISHED run"
    runs_by_trial = finished_children(root / "resume.db")
    assert {t: r.info.run_id for t, r in runs_by_trial.items()} == dict(
        zip(trials["trial_id"], trials["mlflow_run_id"], strict=True)
    )
    assert Counter(trials["config/task"]) == {t["name"]: SAMPLES for t in TASKS}
    summary = json.loads((root / OUT / "baselines.json").read_text())["tasks"]
    assert set(summary) == {t["name"] for t in TASKS}
    for task, entry in summary.items():
        assert [t.name for t in load_params(root / OUT / entry["params"]).tasks] == [task]
        assert entry["trial_id"] in set(trials["trial_id"])
        assert entry["mlflow_run_id"] == runs_by_trial[entry["trial_id"]].info.run_id
        assert sorted(p.name for p in (root / OUT / "finalists" / task).iterdir()) == [
            f"{rank}.yaml" for rank in range(1, SAMPLES + 1)
        ]
    return runs_by_trial


def _done(root: Path) -> bool:
    """Whether the stage has written its outputs (and recorded that it is done)."""
    try:
        return bool(_state(root)["complete"])
    except (ValueError, KeyError, OSError):  # not written yet, or being written
        return False


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A stage run to its end, killed (the whole group) as soon as its outputs are written:
    while Ray shuts down, before `dvc repro` could record them. Its time is the full run's
    (to the outputs, as the reruns' times)."""
    root = tmp_path_factory.mktemp("whole")
    cmd = _project(root)
    with killed(cmd, root, lambda: _done(root), group=True) as seconds:
        pass
    return {
        "root": root,
        "cmd": cmd,
        "seconds": seconds,
        "runs": finished_children(root / "resume.db"),
        "outputs": _outputs(root),
        "state": _state(root),
    }


@pytest.mark.slow
def test_a_rerun_after_a_kill_once_the_stage_was_done_trains_nothing(
    uninterrupted: dict[str, Any],
) -> None:
    root, before = uninterrupted["root"], uninterrupted["runs"]
    assert len(before) == TRIALS
    summary = root / OUT / "baselines.json"
    written = summary.stat().st_mtime
    second, seconds = run_stage(
        uninterrupted["cmd"], root, lambda: summary.exists() and summary.stat().st_mtime > written
    )
    assert second.returncode == 0, second.stderr[-3000:]
    if _state(root)["code"] != uninterrupted["state"]["code"]:
        pytest.skip("the package's code changed during the test: a rerun then starts afresh")
    assert "(resumed)" in second.stderr
    after = _check_store_and_outputs(root, second.stderr)
    retrained = [t for t, r in before.items() if after[t].info.end_time != r.info.end_time]
    assert not retrained and set(after) == set(before)
    assert _outputs(root) == uninterrupted["outputs"]
    print(
        f"baselines resume (killed once done): {len(before)} finished before the kill, "
        f"{len(after)} after, {len(all_runs(root / 'resume.db'))} runs, {len(retrained)} "
        f"retrained; rerun {seconds:.0f} s vs full {uninterrupted['seconds']:.0f} s"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("seed", "group"),
    [(0, False), (1, True)],
    ids=["driver-after-the-first-trial", "group-after-a-seeded-count"],
)
def test_a_killed_baselines_stage_resumes_without_rerunning_finished_trials(
    uninterrupted: dict[str, Any], tmp_path: Path, seed: int, group: bool
) -> None:
    cmd = _project(tmp_path)
    storage = tmp_path / "resume_results"
    # Seed 0: as soon as one trial has finished; otherwise a seeded count of them, with
    # work left to kill.
    after = 1 if seed == 0 else random.Random(seed).randint(2, TRIALS // 2)

    with killed(cmd, tmp_path, lambda: ready_to_kill(storage, STAGE, after), group=group):
        (experiment,) = [p for p in storage.iterdir() if p.is_dir()]
        restore_backups(experiment)  # as the rerun does: a kill may truncate a state file
        before = finished_children(tmp_path / "resume.db")
        assert after <= len(before) < TRIALS
        second, seconds = run_stage(cmd, tmp_path, lambda: _done(tmp_path))

    assert second.returncode == 0, second.stderr[-3000:]
    assert "(resumed)" in second.stderr
    after_runs = _check_store_and_outputs(tmp_path, second.stderr)
    # Finished before the kill: the same run, not reopened, not trained again.
    retrained = [t for t, r in before.items() if after_runs[t].info.end_time != r.info.end_time]
    assert not retrained
    assert all(after_runs[t].info.run_id == r.info.run_id for t, r in before.items())
    assert _outputs(tmp_path) == uninterrupted["outputs"]
    print(
        f"baselines resume ({'process group' if group else 'driver'} killed, seed {seed}): "
        f"{len(before)} finished before the kill, {len(after_runs)} after, "
        f"{len(all_runs(tmp_path / 'resume.db'))} runs, {len(retrained)} retrained; rerun "
        f"{seconds:.0f} s vs full {uninterrupted['seconds']:.0f} s"
    )
