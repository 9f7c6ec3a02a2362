"""What a search stage sets up before any training: tracking, data, Ray, and resume state.

The order matters for failing fast: the tracking store is reached (seconds) and the cluster
checked before features load or trials start.

Which search the stage's inputs make, and whether an earlier one continues, is
`multitune.tuning.record`; a search grows in parts (`StageSession.search`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from multitune import tracking
from multitune.config import Params
from multitune.config.tuning import BaselinesConfig, SweepConfig
from multitune.console import console
from multitune.errors import UserError
from multitune.io import write_json
from multitune.training import TrainingData
from multitune.tuning.callbacks import quiet_user_errors
from multitune.tuning.cluster import (
    ClusterInfo,
    check_multi_node,
    check_resources,
    object_store_size,
    ray_address,
    ray_cluster,
)
from multitune.tuning.outputs import reconcile, trials_frame
from multitune.tuning.record import open_search
from multitune.tuning.runner import SearchJob, TrialRecord, read_search, run_search
from multitune.tuning.trial import TASK_KEY


@dataclass
class StageSession:
    """An open search stage.

    Attributes:
        params: The validated params.
        tracker: The MLflow store.
        parent: The stage's parent run.
        data: The training data (CPU; trials move it to their device).
        cluster: The Ray cluster.
        storage_path: Tune's storage (absolute path or URI).
        experiment: Base name of this stage's Tune experiment(s).
        resumed: Whether an earlier invocation of the same search is being continued
            (interrupted, finished, or grown).
        run_tags: Tags for every trial run.
        state_file: The search's record: its parent run, code, and parts (experiments).
        state: What `state_file` holds.
    """

    params: Params
    tracker: tracking.Tracking
    parent: tracking.RunHandle
    data: TrainingData
    cluster: ClusterInfo
    storage_path: str
    experiment: str
    resumed: bool
    run_tags: dict[str, str]
    state_file: Path
    state: dict[str, Any] = field(default_factory=dict)

    def concurrency(self, budget: SweepConfig | BaselinesConfig, num_samples: int) -> int:
        """Trials at once: what the resources allow, capped by `max_concurrent` and budget."""
        slots = self.cluster.slots(budget.resources)
        if budget.max_concurrent is not None:
            slots = min(slots, budget.max_concurrent)
        return max(1, min(slots, num_samples))

    def search(
        self, job: SearchJob, budget: SweepConfig | BaselinesConfig
    ) -> tuple[list[TrialRecord], pd.DataFrame]:
        """Run `job` on this session's data, cluster and parent run.

        The search's finished parts are read back, an interrupted one is resumed, and when
        it holds fewer trials than `job.num_samples` (per task), a new part runs only the
        missing ones, its searcher continuing from the earlier trials. With more, the first
        `job.num_samples` answer.

        Returns the trial records and the trials table, after MLflow has been made to match
        the search (one ended child run per trial, of every part).

        Raises:
            UserError: a trial's sampled values did not validate (which stopped the search);
                one line naming the knobs, their values and what is wrong.
        """
        parts: list[dict[str, Any]] = self.state.setdefault("parts", [])
        records: list[TrialRecord] = []
        for part in parts:
            if part["done"]:
                records += read_search(self.storage_path, part["name"], job.spec)
            else:  # interrupted: resumed from Tune's saved state
                records += self._run(replace(job, name=part["name"]), budget, part)
        more = replace(
            job,
            name=self.experiment + (f"+{len(parts)}" if parts else ""),
            history=tuple(records),
        )
        if more.total:
            if records:
                console.print(
                    f"[bold]{job.label}[/] growing the search: {more.total} more "
                    f"trial{'s' if more.total != 1 else ''} on top of the {len(records)} kept",
                    soft_wrap=True,
                )
            parts.append({"name": more.name, "done": False})
            records += self._run(more, budget, parts[-1])
        runs = reconcile(self.tracker, self.parent.run_id, records)
        records = job.kept(records)
        invalid = next((r for r in records if r.config_error), None)
        if invalid is not None:
            task = invalid.config.get(TASK_KEY)
            raise UserError(
                f"{job.label} trial {invalid.trial_id}"
                + (f" (task {task})" if task is not None else "")
                + f" {invalid.config_error}. Narrow sweep.space so that every value it can "
                "sample is valid; the search stopped."
            )
        return list(records), trials_frame(records, runs)

    def _run(
        self, job: SearchJob, budget: SweepConfig | BaselinesConfig, part: dict[str, Any]
    ) -> list[TrialRecord]:
        """Run (or resume) one part of the search, recorded as done once Tune returns."""
        self._save(complete=False)
        records = run_search(
            job,
            self.data,
            storage_path=self.storage_path,
            concurrency=self.concurrency(budget, job.total or 1),
            tracker=self.tracker,
            parent_run_id=self.parent.run_id,
            run_tags=self.run_tags,
        )
        part["done"] = True
        self._save(complete=False)
        return records

    def _save(self, **changes: Any) -> None:
        self.state.update(changes)
        write_json(self.state_file, self.state)


@contextlib.contextmanager
def stage_session(
    stage: str,
    params: Params,
    budget: SweepConfig | BaselinesConfig,
    *,
    data_dir: Path,
    project_root: Path,
) -> Iterator[StageSession]:
    """Open tracking, Ray and the data; resume an interrupted invocation of the same inputs.

    An invocation is identified by a hash of the params and data it depends on (all but
    `record.NOT_KEYED`): the same inputs after an interruption resume the stored Tune
    experiment and MLflow parent run (see `record._resume_from` for a finished one); changed
    inputs start afresh, and the stage says which.

    Raises:
        UserError: tracking unreachable, cluster unable to run the trials, data missing.
    """
    project_root = project_root.resolve()
    tracker = tracking.connect(params.mlflow, project_root)
    found = open_search(stage, params, data_dir, project_root, tracker)
    data = TrainingData.from_files(data_dir, params, "cpu")
    address = ray_address(params.sweep.ray_address)
    # Ray may report a stopped trial's UserError late, while it shuts down: kept quiet too.
    with (
        quiet_user_errors(),
        ray_cluster(
            address, object_store_size(data.nbytes, params.sweep.object_store_mb)
        ) as cluster,
    ):
        check_resources(cluster, budget.resources, stage)
        check_multi_node(cluster, tracker.uri, found.storage)
        with tracking.stage_run(
            stage,
            params,
            project_root=project_root,
            data_paths=found.data_paths,
            run_id=found.resume_run,
            tags={"experiment": found.experiment},
        ) as parent:
            state = found.opened(parent.run_id)
            write_json(found.state_file, state)
            session = StageSession(
                params=params,
                tracker=tracker,
                parent=parent,
                data=data,
                cluster=cluster,
                storage_path=found.storage,
                experiment=found.experiment,
                resumed=bool(found.resume_run),
                run_tags=tracking.base_tags(
                    stage, params, project_root=project_root, data_hash=found.data_hash
                ),
                state_file=found.state_file,
                state=state,
            )
            yield session
            session._save(complete=True)
