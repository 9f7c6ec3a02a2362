"""A killed final stage resumes: its finished runs are read back from MLflow, not retrained.

An *attempt* is one invocation's parent run, tagged `attempt` with a hash of everything its
runs depend on: the data, the params (all but `mlflow`) and the package's code. A rerun of
the same attempt, on the same host and project directory (`dvc repro` holds the project's
lock, so no other stage of it is running), reopens the newest parent run with that tag that
did not end FINISHED (`interrupted_attempt`); changed inputs start a new attempt, and an
interrupted attempt of other inputs is ended KILLED.

In a reopened attempt (`Ledger.open`):

* a child run left RUNNING (the stage died while logging it) is marked FAILED: its job
  trains again;
* a FINISHED child carries a `run_key` tag, a hash of its job (`run_key`: kind, tasks,
  seed, config, early-stopping baseline, fold rows, affinity), its record (`record/`,
  `multitune.final.runs.write_record`) and, for the kinds the stage publishes, its model
  (`model/`). A job whose key is found is read back instead of trained (`Ledger.find`): the
  same `SeedRun`, predictions included, so the report and the registry's gate see exactly
  what an uninterrupted run would have;
* the store keeps one FINISHED run per job: a job is logged only when no finished run of
  its key exists.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multitune import tracking
from multitune.config import Params
from multitune.final.runs import Fitted, RunJob, log_run, read_record
from multitune.final.scoring import SeedRun
from multitune.tracking import tags as T
from multitune.tracking.registry import package_code_hash

ATTEMPT = "attempt"
RUN_KEY = "run_key"
INTERRUPTED = (
    "interrupted: the final stage stopped before this run was logged whole; the rerun trained "
    "its job again"
)
SUPERSEDED = "interrupted, and its inputs (params, data or code) changed before the rerun"


def attempt_tags(params: Params, data_hash: str, project_root: Path) -> dict[str, str]:
    """The tags that identify an attempt of the final stage on this project."""
    key = tracking.params_hash(
        {
            "params": params.model_dump(mode="json", exclude={"mlflow"}),
            "data": data_hash,
            "code": package_code_hash(),
        }
    )
    return {
        ATTEMPT: key,
        "host": socket.gethostname(),
        "project": str(project_root.resolve()),
    }


def interrupted_attempt(attempt: Mapping[str, str]) -> str | None:
    """The parent run of the interrupted `attempt` (`attempt_tags`) to resume, if any.

    Every other unfinished attempt of this project (its inputs have changed since) is ended
    KILLED and its runs left RUNNING FAILED: nothing of a killed stage stays RUNNING.
    """
    project = {k: v for k, v in attempt.items() if k != ATTEMPT}
    resume = None
    for run in tracking.unfinished_runs({T.STAGE: "final", **project}):
        if resume is None and run.tags.get(ATTEMPT) == attempt[ATTEMPT]:
            resume = run.run_id
        elif run.status == "RUNNING":
            _fail_running_children(run.run_id)
            tracking.end_run(run.run_id, "KILLED", SUPERSEDED)
    return resume


def _fail_running_children(parent_run_id: str) -> list[tracking.StoredRun]:
    """Mark the runs a killed stage left RUNNING under `parent_run_id` FAILED; return the
    others."""
    others = []
    for child in tracking.child_runs(parent_run_id):
        if child.status == "RUNNING":
            tracking.end_run(child.run_id, "FAILED", INTERRUPTED)
        else:
            others.append(child)
    return others


def run_key(job: RunJob) -> str:
    """A hash of what determines a job's run (its `key` is only the caller's handle)."""
    folds = {
        split: hashlib.sha256(rows.cpu().numpy().tobytes()).hexdigest()[:16]
        for split, rows in (job.splits or {}).items()
    }
    return tracking.params_hash(
        {
            "kind": job.kind,
            "tasks": job.tasks,
            "seed": job.seed,
            "params": job.params.model_dump(mode="json", exclude={"mlflow"}),
            "baseline": job.baseline,
            "splits": folds,
            "affinity_every": job.affinity_every,
        }
    )


@dataclass
class Ledger:
    """The final runs of one attempt: found again by key, or logged with theirs.

    Attributes:
        parent_run_id: The attempt's parent run.
        tags: Tags every logged run carries.
        model_dir: Where a job's model goes (None: the job's model is not kept).
        finished: Run key -> the id of its FINISHED run in this attempt.
        reused: Runs read back instead of trained.
        trained: Runs trained and logged.
    """

    parent_run_id: str
    tags: Mapping[str, str]
    model_dir: Callable[[RunJob], Path | None]
    finished: dict[str, str] = field(default_factory=dict)
    reused: int = 0
    trained: int = 0

    @classmethod
    def open(
        cls,
        parent_run_id: str,
        tags: Mapping[str, str],
        model_dir: Callable[[RunJob], Path | None],
    ) -> Ledger:
        """The attempt's ledger: its finished runs by key; runs left RUNNING marked FAILED."""
        ledger = cls(parent_run_id, tags, model_dir)
        for child in _fail_running_children(parent_run_id):
            if child.status == "FINISHED" and RUN_KEY in child.tags:
                ledger.finished.setdefault(child.tags[RUN_KEY], child.run_id)
        return ledger

    def find(self, job: RunJob) -> SeedRun | None:
        """The record of `job`'s finished run, its model put where `model_dir` says; None
        when it has none."""
        run_id = self.finished.get(run_key(job))
        if run_id is None:
            return None
        with tempfile.TemporaryDirectory(prefix="multitune-resume-") as tmp:
            run = read_record(tracking.download(run_id, "record", tmp))
            target = self.model_dir(job)
            if target is not None:
                model = tracking.download(run_id, "model", Path(tmp) / "model-download")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(model, target)
        self.reused += 1
        return run

    def record(self, job: RunJob, fitted: Fitted) -> SeedRun:
        """Log a trained job's run with its key (and model, where kept)."""
        run = log_run(
            job,
            fitted,
            parent_run_id=self.parent_run_id,
            tags={**self.tags, RUN_KEY: run_key(job)},
            save_to=self.model_dir(job),
        )
        self.trained += 1
        return run

    def child(
        self, name: str, key: str, tags: Mapping[str, str], log: Callable[[Any], None]
    ) -> str:
        """The id of a run that records rather than trains (the linear reference, a shipped
        grouping): the attempt's finished one under `key`, or a new one `log` fills."""
        found = self.finished.get(key)
        if found is not None:
            return found
        handle = tracking.start_child(self.parent_run_id, name, {**tags, RUN_KEY: key})
        try:
            log(handle)
        except BaseException as err:
            handle.end("FAILED", error=f"{type(err).__name__}: {err}")
            raise
        handle.end()
        self.finished[key] = handle.run_id
        return handle.run_id
