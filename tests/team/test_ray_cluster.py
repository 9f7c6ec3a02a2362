"""A sweep on a two-node Ray cluster (loopback) tracked by `multitune server`; a node dies.

The head runs on 127.0.0.2 and the worker on 127.0.0.3, one CPU each, so two trials run at
once, one per node. Once the worker has finished a trial and runs another, the test
SIGKILLs every process of the worker node. The sweep must still end with `num_samples`
finished trials (the killed one retried from its checkpoint on the head), no MLflow run
left RUNNING, and the trials finished before the fault untouched.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow import MlflowClient
from tuning.project import tiny_params, write_project

from .servers import HEAD_IP, WORKER_IP, mlflow_server, ray_cluster

SAMPLES = 6
SWEEP = Path(__file__).parents[2] / "pipeline" / "sweep.py"


def _write_cluster_project(root: Path, tracking_uri: str, address: str) -> Path:
    sections: dict[str, Any] = {
        "train": {
            "epochs": 30,
            "epoch_steps": None,
            "batch_size": 32,
            "patience": 30,
            "device": "cpu",
        },
        "mlflow": {"tracking_uri": tracking_uri, "experiment": "cluster"},
    }
    write_project(root, n=600, **sections)
    raw = tiny_params(root, **sections)
    raw["sweep"] |= {
        "num_samples": SAMPLES,
        "scheduler": {"name": "none"},
        "max_failures": 2,
        # Every epoch: the test asserts that a trial on the lost node continues from its
        # last checkpoint, whenever the node dies (the default saves every 3rd epoch).
        "checkpoint_every": 1,
        "ray_address": address,
        "storage_path": str(root / "shared" / "ray_results"),  # one disk: every node sees it
    }
    path = root / "cluster.yaml"
    path.write_text(json.dumps(raw))
    # The sweep's reference: fixed single-task validation scores (the baselines stage is
    # tested elsewhere; its output format is all the sweep reads).
    baselines = root / "results" / "baselines"
    baselines.mkdir(parents=True)
    summary = {"bin": {"auroc": 0.8}, "cls": {"macro_f1": 0.5}, "reg": {"r2": 0.5}}
    (baselines / "baselines.json").write_text(
        json.dumps({"tasks": {t: {"val": v} for t, v in summary.items()}})
    )
    return path


def _children(client: MlflowClient) -> list[Any]:
    experiment = client.get_experiment_by_name("cluster")
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], max_results=200)
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


@pytest.mark.slow
def test_a_sweep_survives_losing_a_node(tmp_path: Path) -> None:
    with (
        mlflow_server(tmp_path, "sqlite:///server.db") as url,
        ray_cluster(tmp_path) as cluster,
    ):
        params = _write_cluster_project(tmp_path, url, cluster.address)
        log = tmp_path / "sweep.log"
        started = time.monotonic()
        driver = subprocess.Popen(
            [sys.executable, str(SWEEP), "--params", params.name, "--out", "results/sweep"],
            cwd=tmp_path,
            env=cluster.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            client = MlflowClient(url)
            deadline = time.monotonic() + 240
            while True:  # the worker has finished a trial and is running another
                runs = _children(client)
                on_worker = [
                    r
                    for r in runs
                    if r.info.status == "RUNNING" and r.data.tags.get("node") == WORKER_IP
                ]
                finished = {
                    r.data.tags["trial_id"]: r.info.end_time
                    for r in runs
                    if r.info.status == "FINISHED"
                }
                done_on_worker = [
                    r
                    for r in runs
                    if r.info.status == "FINISHED" and r.data.tags.get("node") == WORKER_IP
                ]
                if on_worker and done_on_worker:
                    break
                assert driver.poll() is None, log.read_text()[-4000:]
                assert time.monotonic() < deadline, "no trial ran on the worker in time"
                time.sleep(0.3)
            killed_at = time.monotonic() - started
            killed = cluster.kill_worker()
            victims = {r.data.tags["trial_id"] for r in on_worker}
            driver.wait(timeout=300)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
        total = time.monotonic() - started
        assert driver.returncode == 0, log.read_text()[-4000:]

        trials = pd.read_parquet(tmp_path / "results/sweep/trials.parquet")
        assert len(trials) == SAMPLES and trials["trial_id"].is_unique
        assert set(trials["status"]) == {"completed"}
        assert {HEAD_IP, WORKER_IP} <= set(trials["node"])
        runs = {r.data.tags["trial_id"]: r for r in _children(MlflowClient(url))}
        assert set(runs) == set(trials["trial_id"])
        experiment = MlflowClient(url).get_experiment_by_name("cluster").experiment_id
        everything = MlflowClient(url).search_runs([experiment], max_results=200)
        assert [r.info.run_id for r in everything if r.info.status == "RUNNING"] == []
        assert {r.info.status for r in runs.values()} == {"FINISHED"}
        for trial_id, end_time in finished.items():  # finished before the fault: untouched
            assert runs[trial_id].info.end_time == end_time
        retried = {t: int(r.data.tags.get("retries", 0)) for t, r in runs.items()}
        assert all(retried[t] >= 1 for t in victims), (victims, retried)
        rerun: dict[str, list[int]] = {}
        for trial_id in victims:  # resumed from a checkpoint, not from epoch 1
            history = MlflowClient(url).get_metric_history(runs[trial_id].info.run_id, "objective")
            steps = sorted(m.step for m in history)
            # Epochs after the last checkpoint run twice; a restart from scratch would log
            # epoch 1 twice.
            assert steps.count(1) == 1, f"{trial_id} started over: {steps}"
            assert set(steps) == set(range(1, max(steps) + 1))
            rerun[trial_id] = sorted({s for s in steps if steps.count(s) > 1})
        print(
            f"\ncluster sweep: worker killed at {killed_at:.1f}s ({len(killed)} processes) with "
            f"{len(finished)} trial(s) finished and {len(victims)} running on it; "
            f"{len(trials)} finished at {total:.1f}s; retries "
            f"{ {t: n for t, n in retried.items() if n} }; epochs run twice {rerun}; nodes "
            f"{trials['node'].value_counts().to_dict()}"
        )
