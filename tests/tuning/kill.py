"""Kill a search stage mid-search (SIGKILL, no cleanup) and read back what it left behind.

Shared by the kill-and-resume tests of the sweep and the baselines: the stage runs as a user
runs it (`python pipeline/<stage>.py`, in its own session), and is killed once Tune's saved
state shows finished trials beside an unfinished one that has a checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import ViewType

PIPELINE = Path(__file__).parents[2] / "pipeline"


def stage_command(stage: str, params: str, out: str) -> list[str]:
    """The command line of `pipeline/<stage>.py` (run from the project's root)."""
    return [sys.executable, str(PIPELINE / f"{stage}.py"), "--params", params, "--out", out]


def saved_trials(storage: Path, stage: str) -> list[Any]:
    """The trials of the stage's saved Tune state under `storage` ([] before the first
    snapshot, or while one is being written)."""
    from ray import tune

    # Trials without a result file yet are expected while the stage runs: not a warning.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    for experiment in storage.glob(f"{stage}-*"):
        if experiment.is_dir() and list(experiment.glob("experiment_state-*.json")):
            try:
                return list(tune.ExperimentAnalysis(str(experiment)).trials)
            except Exception:  # being written right now
                return []
    return []


def ready_to_kill(storage: Path, stage: str, finished: int = 1) -> bool:
    """At least `finished` trials have finished and another, unfinished, has a checkpoint
    saved (in Tune's saved state: what a resumed stage starts from)."""
    trials = saved_trials(storage, stage)
    done = sum(t.status == "TERMINATED" for t in trials)
    return done >= finished and any(t.status != "TERMINATED" and t.checkpoint for t in trials)


@contextlib.contextmanager
def killed(
    cmd: list[str],
    cwd: Path,
    ready: Callable[[], bool],
    *,
    group: bool = False,
    timeout_s: float = 240,
) -> Iterator[float]:
    """Run `cmd` in its own session and SIGKILL it once `ready()`: the driver alone (its Ray
    processes are left to notice), or with `group` its whole process group (the driver and
    the Ray it started). Yields the seconds it ran; on leaving, whatever the kill left of
    its session is killed too.
    """
    started = time.monotonic()
    process = subprocess.Popen(cmd, cwd=cwd, start_new_session=True)
    try:
        while not ready() and process.poll() is None:
            assert time.monotonic() - started < timeout_s, "no trial finished in time"
            time.sleep(0.25)
        if group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait()
        seconds = time.monotonic() - started
        assert process.returncode == -signal.SIGKILL, "the stage ended before it was killed"
        time.sleep(1)  # as a person would: the rerun does not start in the same instant
        yield seconds
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # Ray's agents outlive a killed driver
        process.wait()


def run_stage(
    cmd: list[str], cwd: Path, done: Callable[[], bool]
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `cmd` to its end. Returns the process and the seconds until `done()` first held
    (the stage's outputs written: what `killed` measures for a run killed at its end), or
    until it exited if it never did."""
    started = time.monotonic()
    process = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seconds = None
    while True:
        try:
            out, err = process.communicate(timeout=0.25)
            break
        except subprocess.TimeoutExpired:
            assert time.monotonic() - started < 300, "the rerun did not finish"
            if seconds is None and done():
                seconds = time.monotonic() - started
    if seconds is None:
        seconds = time.monotonic() - started
    return subprocess.CompletedProcess(cmd, process.returncode, out, err), seconds


def all_runs(db: Path, experiment: str = "tests") -> list[Any]:
    """Every run of the experiment in the SQLite store `db`, deleted ones included."""
    client = MlflowClient(f"sqlite:///{db}")
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return list(
        client.search_runs([found.experiment_id], run_view_type=ViewType.ALL, max_results=1000)
    )


def finished_children(db: Path, experiment: str = "tests") -> dict[str, Any]:
    """The FINISHED (not deleted) trial runs of the store, by trial id."""
    return {
        r.data.tags["trial_id"]: r
        for r in all_runs(db, experiment)
        if "mlflow.parentRunId" in r.data.tags
        and r.info.status == "FINISHED"
        and r.info.lifecycle_stage == "active"
    }
