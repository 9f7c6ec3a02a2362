"""What a search stage sets up before any training: tracking, data, Ray, and resume state.

The order matters for failing fast: the tracking store is reached (seconds) and the cluster
checked before features load or trials start.

A search is identified by what its trials depend on (the data, the params but the number of
trials and where they run, the package's code), not by how many trials it holds: asked for
more, a finished search grows (`StageSession.search`, `multitune.tuning.runner`); asked for
fewer, or the same, it trains nothing. Anything else changed starts a new search, and the
stage says which setting made it new.
"""

from __future__ import annotations

import contextlib
import json
import shutil
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
from multitune.tuning.runner import SearchJob, TrialRecord, read_search, run_search
from multitune.tuning.trial import TASK_KEY

DATA_FILES = ("dataset.parquet", "splits.parquet", "tasks.json", "features")
STATE_SUFFIX = ".multitune.json"
LATEST = "{stage}.latest"
"""Per stage, beside the searches' records: the key of its last search (to say why one is
new)."""

NOT_KEYED = {
    "sweep": {"num_samples", "max_concurrent", "ray_address", "object_store_mb"},
    "baselines": {"num_samples", "max_concurrent"},
}
"""Settings that say how many trials a search holds, or where they run, not what they are:
changing them keeps the search (it grows, or answers with its first trials)."""


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
        _write_state(self.state_file, self.state)

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
) -> Iterator[StageSession]:
    """Open tracking, Ray and the data; resume an interrupted invocation of the same inputs.

    An invocation is identified by a hash of the params and data it depends on (all but
    `NOT_KEYED`): the same inputs after an interruption resume the stored Tune experiment and
    MLflow parent run (see `_resume_from` for a finished one); changed inputs start afresh,
    and the stage says which.

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
        "params": _keyed(params),
    }
    experiment = f"{stage}-{tracking.params_hash(key_source)}"
    sweep_cfg = params.sweep
    # A `dvc exp run --temp` / queued copy keeps its searches in the workspace, where the
    # next run finds them to grow.
    workspace = tracking.workspace_root(project_root)
    storage = sweep_cfg.storage_path
    if "://" not in storage:
        storage = str((workspace / storage).resolve())
    state_file = _state_file(storage, workspace, experiment)
    code = package_code_hash()
    where = f"{tracker.uri}#{tracker.experiment_id}"
    previous = _read_state(state_file)
    resume_run = _resume_from(previous, code, where)
    if not resume_run:
        _clear(storage, experiment)
        previous = {}
    latest = _state_file(storage, workspace, LATEST.format(stage=stage))
    _say_why_new(stage, _read_state(latest), key_source, code, resumed=bool(resume_run))
    _write_state(latest, {"experiment": experiment, "code": code, "key": key_source})

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
            state = {
                "parent_run_id": parent.run_id,
                "store": where,
                "code": code,
                "complete": False,
                "parts": _parts(previous, experiment),
            }
            _write_state(state_file, state)
            run_tags = tracking.base_tags(
                stage, params, project_root=project_root, data_hash=dhash
            )
            session = StageSession(
                params=params,
                tracker=tracker,
                parent=parent,
                data=data,
                cluster=cluster,
                storage_path=storage,
                experiment=experiment,
                resumed=bool(resume_run),
                run_tags=run_tags,
                state_file=state_file,
                state=state,
            )
            yield session
            session._save(complete=True)


def _keyed(params: Params) -> dict[str, Any]:
    """The params a search's trials depend on (see `NOT_KEYED`)."""
    dumped = params.model_dump(mode="json", exclude={"final", "registry", "mlflow"})
    for section, keys in NOT_KEYED.items():
        for key in keys:
            dumped[section].pop(key, None)
    return dumped


def _parts(previous: dict[str, Any], experiment: str) -> list[dict[str, Any]]:
    """The parts (Tune experiments) of the search being continued, oldest first; a record
    from before searches grew names none: its one experiment, finished when complete."""
    if not previous:
        return []
    if "parts" in previous:
        return list(previous["parts"])
    return [{"name": experiment, "done": bool(previous.get("complete"))}]


def _say_why_new(
    stage: str, latest: dict[str, Any], key: dict[str, Any], code: str, *, resumed: bool
) -> None:
    """One line when this search is not the stage's last one: which setting made it new."""
    if resumed or not latest:
        return
    if latest.get("key") == key:
        why = (
            "the package's code changed"
            if latest.get("code") != code
            else "the earlier one logged to another tracking store"
        )
    else:
        changed = _changed(latest.get("key", {}), key)
        why = (
            "changed: "
            + ", ".join(changed[:3])
            + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
            if changed
            else "its inputs changed"
        )
    console.print(
        f"[bold]{stage}[/] a new search ({why}); earlier trials are not reused", soft_wrap=True
    )


def _changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The dotted keys whose values differ between two search keys."""
    a, b = tracking.flatten(old), tracking.flatten(new)
    names = {"data": "the data (its files' hash)"}
    return [
        names.get(k, k.removeprefix("params."))
        for k in sorted(set(a) | set(b))
        if k not in a or k not in b or a[k] != b[k]
    ]


def _state_file(storage: str, workspace: Path, experiment: str) -> Path:
    base = Path(storage) if "://" not in storage else workspace / "ray_results"
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
