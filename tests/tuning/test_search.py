"""Baselines and sweep on a tiny project with a real Ray (2 CPUs) and a real SQLite MLflow."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow import MlflowClient

from multitune.config import load_params, validate_params
from multitune.errors import UserError
from multitune.tuning import run_baselines, run_sweep
from multitune.tuning.cluster import ClusterInfo, NodeInfo, check_multi_node
from multitune.tuning.state import restore_backups

from .kill import all_runs, finished_children, killed, ready_to_kill, run_stage, stage_command
from .project import tiny_params, write_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    write_project(root)
    return root


@pytest.fixture(scope="module")
def baselines(local_ray: Any, project: Path) -> Any:
    params = load_params(project / "params.yaml")
    return run_baselines(
        params,
        data_dir=project / "data",
        out_dir=project / "results/baselines",
        project_root=project,
    )


@pytest.fixture(scope="module")
def sweep(baselines: Any, project: Path) -> Any:
    params = load_params(project / "params.yaml")
    return run_sweep(
        params,
        data_dir=project / "data",
        baselines_dir=project / "results/baselines",
        out_dir=project / "results/sweep",
        project_root=project,
    )


def _client(project: Path) -> tuple[MlflowClient, str]:
    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    return client, client.get_experiment_by_name("tests").experiment_id


def _stage_runs(project: Path, stage: str) -> tuple[Any, list[Any]]:
    client, exp = _client(project)
    runs = client.search_runs([exp], filter_string=f"tags.stage = '{stage}'", max_results=500)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [p.info.run_id for p in parents]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return parents[0], children


def test_baselines_write_one_best_config_per_task(baselines: Any, project: Path) -> None:
    summary = json.loads((project / "results/baselines/baselines.json").read_text())["tasks"]
    assert set(summary) == {"bin", "cls", "reg"} == set(baselines.best)
    for task, entry in summary.items():
        best = load_params(project / "results/baselines" / entry["params"])
        assert [t.name for t in best.tasks] == [task]
        assert best.model.sharing.name == "hard"
        assert entry["metric"] in entry["val"]
    parent, children = _stage_runs(project, "baselines")
    assert parent.info.status == "FINISHED"
    assert len(children) == 2 * 3
    assert {r.info.status for r in children} == {"FINISHED"}
    assert sorted(r.data.tags["task"] for r in children) == [
        "bin",
        "bin",
        "cls",
        "cls",
        "reg",
        "reg",
    ]
    trials = pd.read_parquet(project / "results/baselines/trials.parquet")
    assert sorted(trials["config/task"]) == ["bin", "bin", "cls", "cls", "reg", "reg"]


def test_every_sweep_trial_is_one_finished_child_run_with_epoch_metrics(
    sweep: Any, project: Path
) -> None:
    parent, children = _stage_runs(project, "sweep")
    assert parent.info.status == "FINISHED"
    assert {"git_commit", "params_hash", "data_hash"} <= set(parent.data.tags)
    assert len(children) == sweep.trials == 3
    assert {r.info.status for r in children} == {"FINISHED"}
    assert len({r.data.tags["trial_id"] for r in children}) == 3
    client, _ = _client(project)
    for run in children:
        assert {"git_commit", "params_hash", "data_hash", "stage"} <= set(run.data.tags)
        assert "train.lr" in run.data.params and "model.sharing.name" in run.data.params
        history = client.get_metric_history(run.info.run_id, "val/cls/macro_f1")
        steps = [m.step for m in history]
        assert steps == list(range(1, len(steps) + 1)) and steps
        for task in ("bin", "cls", "reg"):
            assert any(k.startswith(f"val/{task}/") for k in run.data.metrics)


def test_trials_parquet_agrees_with_mlflow(sweep: Any, project: Path) -> None:
    trials = pd.read_parquet(project / "results/sweep/trials.parquet")
    _, children = _stage_runs(project, "sweep")
    by_id = {r.info.run_id: r for r in children}
    assert set(trials["mlflow_run_id"]) == set(by_id)
    for row in trials.itertuples():
        run = by_id[row.mlflow_run_id]
        assert run.data.tags["trial_id"] == row.trial_id
        assert row.status in ("completed", "stopped")
        assert row.epochs_run >= 1
        key = "final/delta_m" if row.status == "completed" else "delta_m"
        assert run.data.metrics[key] == pytest.approx(row.delta_m)
        for column in trials.columns:
            if column.startswith("val/") and pd.notna(row._asdict().get(column)):
                pass
    assert {"config/lr", "delta_m", "node", "val/bin/auroc"} <= set(trials.columns)
    assert trials["delta_m"].max() == pytest.approx(sweep.best_delta_m)


def test_trials_run_side_by_side(sweep: Any, project: Path) -> None:
    _, children = _stage_runs(project, "baselines")
    spans = sorted((r.info.start_time, r.info.end_time) for r in children)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans))


@pytest.mark.slow
def test_best_yaml_trains_with_multitune_train(sweep: Any, project: Path) -> None:
    best = load_params(project / "results/sweep/best.yaml")
    assert [t.name for t in best.tasks] == ["bin", "cls", "reg"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "multitune.cli",
            "train",
            "--params",
            "results/sweep/best.yaml",
            "--out",
            "retrained",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((project / "retrained/metrics.json").read_text())
    assert set(metrics["val"]) == {"bin", "cls", "reg"}


def test_a_gpu_request_on_a_gpu_less_cluster_fails_at_once(baselines: Any, project: Path) -> None:
    raw = tiny_params(project)
    raw["sweep"]["resources"] = {"cpu": 1, "gpu": 0.5}
    params = validate_params(raw)
    start = time.monotonic()
    with pytest.raises(UserError, match=r"sweep.resources.gpu is 0.5 but no node .* has a GPU"):
        run_sweep(
            params,
            data_dir=project / "data",
            baselines_dir=project / "results/baselines",
            out_dir=project / "results/gpu",
            project_root=project,
        )
    assert time.monotonic() - start < 30
    assert not (project / "results/gpu").exists()


def test_a_crashing_trial_is_retried_then_its_run_ends_failed_with_the_error(
    baselines: Any, project: Path, tmp_path: Path
) -> None:
    raw = tiny_params(project)
    raw["mlflow"] = {"tracking_uri": f"sqlite:///{tmp_path}/crash.db", "experiment": "crash"}
    raw["sweep"] |= {"num_samples": 1, "max_failures": 1, "space": {}}
    raw["train"]["freezing"] = {"name": "warm_start", "path": str(tmp_path / "missing")}
    params = validate_params(raw)
    with pytest.raises(UserError, match="all 1 trial"):
        run_sweep(
            params,
            data_dir=project / "data",
            baselines_dir=project / "results/baselines",
            out_dir=project / "results/crash",
            project_root=project,
        )
    client = MlflowClient(f"sqlite:///{tmp_path}/crash.db")
    exp = client.get_experiment_by_name("crash").experiment_id
    runs = client.search_runs([exp])
    (child,) = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert child.info.status == "FAILED"
    assert "missing" in child.data.tags["error"]
    assert child.data.tags.get("retries") == "1"
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FAILED"


def _nodes(n: int) -> ClusterInfo:
    return ClusterInfo([NodeInfo(f"id{i}", f"10.0.0.{i}", 2.0, 0.0) for i in range(n)], None)


def test_several_nodes_with_a_sqlite_store_is_an_error() -> None:
    with pytest.raises(UserError, match=r"2 nodes but mlflow\.tracking_uri is a local SQLite"):
        check_multi_node(_nodes(2), "sqlite:////x/mlflow.db", "/shared")
    check_multi_node(_nodes(1), "sqlite:////x/mlflow.db", "/local")  # one node: fine
    check_multi_node(_nodes(2), "http://mlflow:5000", "s3://bucket/tune")  # URIs are shared


def test_several_nodes_need_a_shared_storage_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from multitune.tuning import cluster

    monkeypatch.setattr(cluster, "_nodes_not_seeing", lambda c, d: ["10.0.0.1"])
    with pytest.raises(UserError, match=r"not shared: node\(s\) 10.0.0.1 cannot see it"):
        check_multi_node(_nodes(2), "http://mlflow:5000", "/local/ray_results")


def test_the_shared_storage_probe_sees_a_local_path(local_ray: Any, tmp_path: Path) -> None:
    from multitune.tuning.cluster import _nodes_not_seeing, describe

    assert _nodes_not_seeing(describe(), tmp_path) == []


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_rerunning_finished_trials(
    baselines: Any, project: Path
) -> None:
    from ray import tune

    raw = tiny_params(project)
    raw["mlflow"] = {"tracking_uri": "sqlite:///resume.db", "experiment": "tests"}
    # Epochs enough that a trial checkpoints (every 3rd epoch) several times, each second
    # checkpoint forcing a state snapshot: the kill always finds a finished trial beside an
    # unfinished one in the saved state, however loaded the machine.
    raw["train"] |= {"epochs": 30, "patience": 30}
    raw["sweep"] |= {"num_samples": 6, "storage_path": "resume_results"}
    raw["sweep"]["scheduler"] = {"name": "none"}
    (project / "resume.yaml").write_text(json.dumps(raw))
    cmd = stage_command("sweep", "resume.yaml", "results/resume")
    db = project / "resume.db"
    storage = project / "resume_results"

    # The driver dies mid-sweep (SIGKILL: no cleanup).
    with killed(cmd, project, lambda: ready_to_kill(storage, "sweep")):
        (experiment,) = [p for p in storage.iterdir() if p.is_dir()]
        restore_backups(experiment)  # as the resumed sweep does: a kill may truncate a file
        saved = tune.ExperimentAnalysis(str(experiment)).trials
        done_before = {t.trial_id for t in saved if t.status == "TERMINATED"}
        runs_before = finished_children(db)
        assert done_before and len(done_before) < 6
        # The race a kill can hit: Tune deleted the checkpoint its last snapshot points at
        # (num_to_keep) and died before the next snapshot. That trial must still finish.
        lost = next(t for t in saved if t.status != "TERMINATED" and t.checkpoint)
        shutil.rmtree(lost.checkpoint.path)  # type: ignore[union-attr]

        second, seconds = run_stage(
            cmd, project, (project / "results/resume/trials.parquet").exists
        )
    assert second.returncode == 0, second.stderr
    assert "(resumed)" in second.stderr

    trials = pd.read_parquet(project / "results/resume/trials.parquet")
    assert len(trials) == 6 and trials["trial_id"].is_unique
    runs_after = finished_children(db)
    assert set(runs_after) == set(trials["trial_id"]), (
        trials[["trial_id", "status", "error"]].to_string() + "\n" + second.stderr[-4000:]
    )
    runs = all_runs(db)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"], "left RUNNING"
    children = [
        r
        for r in runs
        if "mlflow.parentRunId" in r.data.tags and r.info.lifecycle_stage == "active"
    ]
    assert len(children) == 6  # one run per trial, however often the driver started
    assert len({r.data.tags["mlflow.parentRunId"] for r in children}) == 1
    assert trials.set_index("trial_id").loc[lost.trial_id, "status"] == "completed"
    assert f"trial {lost.trial_id}: checkpoint" in second.stderr  # said what it repaired
    for trial_id in done_before:  # finished before the kill: not run again
        assert runs_after[trial_id].info.end_time == runs_before[trial_id].info.end_time
    retrained = [
        t for t in runs_before if runs_after[t].info.end_time != runs_before[t].info.end_time
    ]
    assert not retrained
    print(
        f"sweep resume: {len(runs_before)} finished before the kill, {len(runs_after)} after, "
        f"{len(runs)} runs, {len(retrained)} retrained; rerun {seconds:.0f} s"
    )
