"""A final stage killed (SIGKILL, no cleanup) at a random point resumes: the rerun trains
only what had not finished, the store holds one FINISHED run per training and nothing left
RUNNING, and the report and registry come out as an uninterrupted run's."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from .project import write_project

SCRIPT = Path(__file__).parents[2] / "pipeline" / "final.py"


def _project(root: Path) -> Path:
    """The tiny project, cut to the phases that train (no transfer runs, no grouping
    candidates; 3 selection folds; the 2-fold cross-fit of the tiny profile)."""
    write_project(
        root, transfer={"method": "none"}, selection={"folds": 3}, grouping={"method": "none"}
    )
    return root / "params.yaml"


def _run(params: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--params", str(params)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _runs(db: Path) -> list[dict[str, Any]]:
    """Every run of the store with its status, end time and tags (read with plain SQL, so a
    half-written store is read as it is)."""
    with sqlite3.connect(db) as con:
        try:
            rows = con.execute("SELECT run_uuid, status, end_time FROM runs").fetchall()
        except sqlite3.OperationalError:  # the stage is still creating the store's tables
            return []
        tags: dict[str, dict[str, str]] = {}
        for run_id, key, value in con.execute("SELECT run_uuid, key, value FROM tags"):
            tags.setdefault(run_id, {})[key] = value
    return [{"id": r, "status": s, "end": e, "tags": tags.get(r, {})} for r, s, e in rows]


def _finished_trainings(db: Path) -> dict[str, dict[str, Any]]:
    """The FINISHED runs that trained, by run key."""
    if not db.exists():
        return {}
    runs = _runs(db)
    return {
        r["tags"]["run_key"]: r
        for r in runs
        if r["status"] == "FINISHED"
        and "run_key" in r["tags"]
        and r["tags"]["kind"] != "reference"
    }


def _numbers(reports: Path) -> dict[str, Any]:
    """metrics.json without what names runs (ids differ between stores)."""
    metrics = json.loads((reports / "metrics.json").read_text())
    metrics.pop("runs")
    metrics["not_converged"] = len(metrics["not_converged"])
    return metrics


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    params = _project(tmp_path_factory.mktemp("whole"))
    started = time.monotonic()
    done = _run(params)
    assert done.returncode == 0, done.stderr[-3000:]
    return {
        "numbers": _numbers(params.parent / "reports"),
        "trainings": len(_finished_trainings(params.parent / "mlflow.db")),
        "seconds": time.monotonic() - started,
        "registry": done.stderr.strip().splitlines()[-1],
    }


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0])  # one random kill point; seed 1 passed too (48 s each)
def test_a_killed_final_stage_resumes_without_retraining(
    uninterrupted: dict[str, Any], tmp_path: Path, seed: int
) -> None:
    params = _project(tmp_path)
    db = tmp_path / "mlflow.db"
    total = uninterrupted["trainings"]
    kill_after = random.Random(seed).randint(1, total - 2)  # runs finished, then the kill

    first = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--params", str(params)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    while len(_finished_trainings(db)) < kill_after and first.poll() is None:
        assert time.monotonic() < deadline, "the stage trained too slowly to be interrupted"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # the stage and its training workers, no cleanup
    first.wait()
    assert first.returncode == -signal.SIGKILL, "the stage ended before it could be killed"
    before = _finished_trainings(db)
    assert 0 < len(before) < total

    started = time.monotonic()
    second = _run(params)
    seconds = time.monotonic() - started
    assert second.returncode == 0, second.stderr[-3000:]
    assert "finished run(s) are read back, not retrained" in second.stderr

    runs = _runs(db)
    assert not [r for r in runs if r["status"] == "RUNNING"], "a killed run was left RUNNING"
    keys = Counter(
        r["tags"]["run_key"] for r in runs if r["status"] == "FINISHED" and "run_key" in r["tags"]
    )
    assert set(keys.values()) == {1}, "a training has more than one FINISHED run"
    after = _finished_trainings(db)
    assert len(after) == total
    for key, run in before.items():  # finished before the kill: read back, not retrained
        assert after[key]["id"] == run["id"] and after[key]["end"] == run["end"]
    stages = [r for r in runs if r["tags"].get("mlflow.runName") == "final"]
    assert len(stages) == 1 and stages[0]["status"] == "FINISHED"  # the attempt, resumed
    # The same seeds on the same machine: the uninterrupted run's numbers and registry.
    assert _numbers(tmp_path / "reports") == uninterrupted["numbers"]
    assert second.stderr.strip().splitlines()[-1] == uninterrupted["registry"]
    print(
        f"final resume (seed {seed}): killed after {len(before)}/{total} trainings; rerun "
        f"trained {total - len(before)}, retrained 0; rerun {seconds:.0f} s vs uninterrupted "
        f"{uninterrupted['seconds']:.0f} s"
    )
