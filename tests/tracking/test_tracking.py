"""Tracking: the store named in params, stage and trial runs, failing fast, concurrency."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from multitune import tracking
from multitune.config import MlflowConfig
from multitune.errors import UserError


def test_sqlite_path_is_relative_to_the_project_root(tmp_path: Path) -> None:
    uri = tracking.resolve_uri("sqlite:///mlflow.db", tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert tracking.resolve_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"


@pytest.mark.parametrize("uri", ["./mlruns", "file:///tmp/mlruns"])
def test_file_store_is_refused(tmp_path: Path, uri: str) -> None:
    with pytest.raises(UserError, match="file store"):
        tracking.resolve_uri(uri, tmp_path)


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialized store, created once: MLflow's schema migrations take seconds."""
    root = tmp_path_factory.mktemp("template")
    tracking.connect(MlflowConfig(experiment="template"), root)
    return root / "mlflow.db"


@pytest.fixture
def project(tmp_path: Path, template_db: Path) -> Path:
    """A project directory holding a copy of the initialized store."""
    shutil.copy(template_db, tmp_path / "mlflow.db")
    return tmp_path


def test_connect_creates_the_experiment_with_artifacts_in_mlartifacts(project: Path) -> None:
    tmp_path = project
    tracker = tracking.connect(MlflowConfig(experiment="exp"), tmp_path)
    assert (tmp_path / "mlflow.db").exists()
    experiment = MlflowClient(tracker.uri).get_experiment(tracker.experiment_id)
    assert experiment.name == "exp"
    assert experiment.artifact_location == (tmp_path / "mlartifacts").resolve().as_uri()
    assert tracking.connect(MlflowConfig(experiment="exp"), tmp_path) == tracker  # idempotent


def test_a_dvc_temp_copy_writes_to_its_workspace_store(project: Path) -> None:
    # `dvc exp run --temp` / `dvc queue start` run the stage in <workspace>/.dvc/tmp/exps/...
    copy = project / ".dvc" / "tmp" / "exps" / "standalone" / "tmpk3x9"
    copy.mkdir(parents=True)
    tracker = tracking.connect(MlflowConfig(experiment="exp"), copy)
    assert tracker.uri == f"sqlite:///{project.resolve()}/mlflow.db"
    assert not (copy / "mlflow.db").exists()
    assert tracking.workspace_root(project) == project.resolve()


def test_mlflow_tracking_uri_wins_over_params_and_does_not_leak(
    project: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path_factory.mktemp("other")
    shutil.copy(project / "mlflow.db", other / "team.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{other}/team.db")
    tracker = tracking.connect(MlflowConfig(tracking_uri="sqlite:///mlflow.db"), project)
    assert tracker.uri == f"sqlite:///{other.resolve()}/team.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    # Without the variable, params' store; and connecting does not export it, so a later
    # connect in this process, or a `dvc repro` it starts, is not sent to this store.
    tracker = tracking.connect(MlflowConfig(tracking_uri="sqlite:///mlflow.db"), project)
    assert tracker.uri == f"sqlite:///{project.resolve()}/mlflow.db"
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_unreachable_server_fails_within_seconds_naming_the_uri(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    with pytest.raises(UserError, match=f"{uri}.*unreachable"):
        tracking.connect(MlflowConfig(tracking_uri=uri), tmp_path)
    assert time.monotonic() - start < 5


def test_server_that_never_answers_fails_within_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # accepts connections, never replies
    monkeypatch.setattr(tracking.connection, "PROBE_TIMEOUT_S", 1.0)
    uri = f"http://127.0.0.1:{server.getsockname()[1]}"
    start = time.monotonic()
    try:
        with pytest.raises(UserError, match="unreachable"):
            tracking.connect(MlflowConfig(tracking_uri=uri), tmp_path)
    finally:
        server.close()
    assert time.monotonic() - start < 5


def test_stage_run_with_children_params_metrics_and_a_failure(project: Path) -> None:
    tmp_path = project
    tracker = tracking.connect(MlflowConfig(), tmp_path)
    data = tmp_path / "data.bin"
    data.write_bytes(b"abc")
    params = {"train": {"lr": 0.01, "hidden": [8, 4]}, "model": {"name": "x"}}
    stage = tracking.stage_run("sweep", params, project_root=tmp_path, data_paths=[data])
    with pytest.raises(RuntimeError, match="boom"), stage as run:
        child = tracking.start_child(run.run_id, "trial_a", {"trial_id": "a"})
        child.log_params(params)
        for epoch in (1, 2, 3):
            child.log_metrics({"val": {"t": {"acc": 0.1 * epoch}}}, step=epoch)
        child.end("FAILED", error=ValueError("bad trial"))
        raise RuntimeError("boom")
    client = MlflowClient(tracker.uri)
    parent = client.get_run(run.run_id)
    assert parent.info.status == "FAILED"
    assert "boom" in parent.data.tags["error"]
    assert parent.data.tags["stage"] == "sweep"
    assert parent.data.tags["data_hash"] == tracking.data_hash([data])
    assert parent.data.tags["params_hash"] == tracking.params_hash(params)
    assert "git_commit" in parent.data.tags
    assert parent.data.params["train.hidden"] == "[8, 4]"
    trial = client.get_run(child.run_id)
    assert trial.info.status == "FAILED"
    assert trial.data.tags["error"] == "ValueError: bad trial"
    assert trial.data.tags["mlflow.parentRunId"] == run.run_id
    history = client.get_metric_history(child.run_id, "val/t/acc")
    assert [m.step for m in history] == [1, 2, 3]
    assert tracking.find_child(run.run_id, "trial_id", "a").run_id == child.run_id
    assert tracking.find_child(run.run_id, "trial_id", "zz") is None


def _writer(root: str, worker: int, errors: mp.Queue) -> None:  # type: ignore[type-arg]
    try:
        tracker = tracking.connect(MlflowConfig(experiment="conc"), Path(root))
        parent = tracker.client.create_run(tracker.experiment_id, run_name=f"p{worker}")
        for i in range(2):
            child = tracking.start_child(parent.info.run_id, f"t{worker}_{i}", {"w": worker})
            child.log_params({"a": {"b": i, "c": [1, 2]}})
            for step in range(6):
                child.log_metrics({f"m{k}": k * step for k in range(10)}, step=step)
            child.end()
    except Exception as err:  # reported to the parent process
        errors.put(repr(err))


@pytest.mark.slow
def test_concurrent_processes_write_one_fresh_sqlite_store_without_lock_errors(
    tmp_path: Path,
) -> None:
    ctx = mp.get_context("spawn")
    errors = ctx.Queue()
    workers = [ctx.Process(target=_writer, args=(str(tmp_path), w, errors)) for w in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert not found, found
    assert all(w.exitcode == 0 for w in workers)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("conc")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 6
    assert {r.info.status for r in children} == {"FINISHED"}
    assert all(len(r.data.metrics) == 10 for r in children)


def test_threads_share_one_store(project: Path) -> None:
    tracker = tracking.connect(MlflowConfig(), project)
    parent = tracker.client.create_run(tracker.experiment_id)
    failures: list[BaseException] = []

    def work(i: int) -> None:
        try:
            child = tracking.start_child(parent.info.run_id, f"t{i}", {"i": i}, tracking=tracker)
            for step in range(5):
                child.log_metrics({"x": float(step)}, step=step)
            child.end()
        except BaseException as err:
            failures.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
