"""What a search stage sets up before any training: tracking, data, Ray, and resume state.

The order matters for failing fast: the tracking store is reached (seconds) and the cluster
checked before features load or trials start.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from multitune import tracking
from multitune.config import Params
from multitune.config.tuning import BaselinesConfig, SweepConfig
from multitune.errors import UserError
from multitune.tracking.registry import package_code_hash
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
from multitune.tuning.runner import SearchJob, TrialRecord, run_search
from multitune.tuning.trial import TASK_KEY

DATA_FILES = ("dataset.parquet", "splits.parquet", "tasks.json", "features")
STATE_SUFFIX = ".multitune.json"


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
        resumed: Whether an interrupted invocation is being continued.
        run_tags: Tags for every trial run.
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

    def concurrency(self, budget: SweepConfig | BaselinesConfig, num_samples: int) -> int:
        """Trials at once: what the resources allow, capped by `max_concurrent` and budget."""
        slots = self.cluster.slots(budget.resources)
        if budget.max_concurrent is not None:
            slots = min(slots, budget.max_concurrent)
        return max(1, min(slots, num_samples))

    def search(
        self, job: SearchJob, budget: SweepConfig | BaselinesConfig, num_samples: int
    ) -> tuple[list[TrialRecord], pd.DataFrame]:
        """Run `job` on this session's data, cluster and parent run.

        Returns the trial records and the trials table, after MLflow has been made to match
        the finished experiment (one ended child run per trial).

        Raises:
            UserError: a trial's sampled values did not validate (which stopped the search);
                one line naming the knobs, their values and what is wrong.
        """
        records = run_search(
            job,
            self.data,
            storage_path=self.storage_path,
            concurrency=self.concurrency(budget, num_samples),
            tracker=self.tracker,
            parent_run_id=self.parent.run_id,
            run_tags=self.run_tags,
        )
        runs = reconcile(self.tracker, self.parent.run_id, records)
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

    @staticmethod
    def device(budget: SweepConfig | BaselinesConfig) -> str:
        """Where trials train: a GPU only when the trial reserves one."""
        return "cuda" if budget.resources.gpu > 0 else "cpu"


@contextlib.contextmanager
def stage_session(
    stage: str,
    params: Params,
    budget: SweepConfig | BaselinesConfig,
    *,
    data_dir: Path,
    project_root: Path,
    key_extra: dict[str, Any] | None = None,
) -> Iterator[StageSession]:
    """Open tracking, Ray and the data; resume an interrupted invocation of the same inputs.

    An invocation is identified by a hash of the params and data it depends on: the same
    inputs after an interruption resume the stored Tune experiment and MLflow parent run
    (see `_resume_from` for a finished one); changed inputs start afresh.

    Raises:
        UserError: tracking unreachable, cluster unable to run the trials, data missing.
    """
    project_root = project_root.resolve()
    tracker = tracking.connect(params.mlflow, project_root)
    data_paths = [data_dir / name for name in DATA_FILES]
    dhash = tracking.data_hash(data_paths)
    key_source = {
        "stage": stage,
        "data": dhash,
        "params": params.model_dump(mode="json", exclude={"final", "registry", "mlflow"}),
        **(key_extra or {}),
    }
    experiment = f"{stage}-{tracking.params_hash(key_source)}"
    sweep_cfg = params.sweep
    storage = sweep_cfg.storage_path
    if "://" not in storage:
        storage = str((project_root / storage).resolve())
    state_file = _state_file(storage, project_root, experiment)
    code = package_code_hash()
    where = f"{tracker.uri}#{tracker.experiment_id}"
    resume_run = _resume_from(_read_state(state_file), code, where)
    if not resume_run:
        _clear(storage, experiment)

    data = TrainingData.from_files(data_dir, params, "cpu")
    address = ray_address(sweep_cfg.ray_address)
    # Ray may report a stopped trial's UserError late, while it shuts down: kept quiet too.
    with (
        quiet_user_errors(),
        ray_cluster(address, object_store_size(data.nbytes, sweep_cfg.object_store_mb)) as cluster,
    ):
        check_resources(cluster, budget.resources, stage)
        check_multi_node(cluster, tracker.uri, storage)
        with tracking.stage_run(
            stage,
            params,
            project_root=project_root,
            data_paths=data_paths,
            run_id=resume_run,
            tags={"experiment": experiment},
        ) as parent:
            state = {"parent_run_id": parent.run_id, "store": where, "code": code}
            _write_state(state_file, {**state, "complete": False})
            run_tags = tracking.base_tags(
                stage, params, project_root=project_root, data_hash=dhash
            )
            yield StageSession(
                params=params,
                tracker=tracker,
                parent=parent,
                data=data,
                cluster=cluster,
                storage_path=storage,
                experiment=experiment,
                resumed=bool(resume_run),
                run_tags=run_tags,
            )
            _write_state(state_file, {**state, "complete": True})


def _state_file(storage: str, project_root: Path, experiment: str) -> Path:
    base = Path(storage) if "://" not in storage else project_root / "ray_results"
    return base / f"{experiment}{STATE_SUFFIX}"


def _resume_from(state: dict[str, Any], code: str, store: str) -> str | None:
    """The parent run of the previous invocation to continue, if any.

    An interrupted invocation is continued. A finished one is taken up again, its finished
    trials reused and nothing trained, when the package's code is the same: a rerun of the
    same inputs and code is a rerun after a kill that came once the stage was done but before
    its process ended (Ray shutting down, `dvc repro` recording the outputs), or a forced one
    that would train the same trials again; after a code change, the search starts afresh.
    A previous invocation that logged to another store (`mlflow` settings) is not continued.
    """
    run = state.get("parent_run_id")
    if not run or state.get("store", store) != store:
        return None
    if state.get("complete") and state.get("code") != code:
        return None
    return str(run)


def _read_state(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)


def _clear(storage: str, experiment: str) -> None:
    """Remove a finished or orphaned earlier experiment of the same name (local storage)."""
    if "://" in storage:
        return
    for path in Path(storage).glob(f"{experiment}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
