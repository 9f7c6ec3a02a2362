"""The final stage on a two-node Ray cluster (loopback): its trainings run on both nodes, as
the searches' trials do, and the report is the local process pool's to the last digit."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from final.project import write_project

from .servers import HEAD_IP, WORKER_IP, ray_cluster

SCRIPT = Path(__file__).parents[2] / "pipeline" / "final.py"


def _project(root: Path, backend: str, address: str | None = None) -> Path:
    # Cut to the phases that train on the backend: both sides over seeds and the cross-fit.
    write_project(
        root,
        transfer={"method": "none"},
        selection={"enabled": False},
        grouping={"method": "none"},
        backend=backend,
    )
    path = root / "params.yaml"
    if address is not None:
        raw = yaml.safe_load(path.read_text())
        raw.setdefault("sweep", {})["ray_address"] = address
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _run(params: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--params", str(params)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _numbers(reports: Path) -> dict[str, Any]:
    """metrics.json without what names runs (ids differ between stores)."""
    metrics = json.loads((reports / "metrics.json").read_text())
    metrics.pop("runs")
    metrics["not_converged"] = len(metrics["not_converged"])
    return metrics


def _nodes(db: Path) -> Counter[str]:
    """Finished trainings per node (tag `node`)."""
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT t.value FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
            "WHERE t.key = 'node' AND r.status = 'FINISHED'"
        ).fetchall()
    return Counter(v for (v,) in rows)


@pytest.mark.slow
def test_the_final_stage_trains_on_both_nodes_and_reports_as_the_process_pool(
    tmp_path: Path,
) -> None:
    local = _project(tmp_path / "local", "processes")
    _run(local)
    with ray_cluster(tmp_path) as cluster:
        remote = _project(tmp_path / "cluster", "ray", cluster.address)
        done = _run(remote, cluster.env)
    assert "trainings run on Ray" in done.stdout + done.stderr
    per_node = _nodes(tmp_path / "cluster" / "mlflow.db")
    assert per_node[HEAD_IP] > 0 and per_node[WORKER_IP] > 0, per_node
    assert not _nodes(tmp_path / "local" / "mlflow.db")  # the pool tags no node
    assert _numbers(tmp_path / "cluster" / "reports") == _numbers(tmp_path / "local" / "reports")
    print(f"final on a two-node cluster: trainings per node {dict(per_node)}")
