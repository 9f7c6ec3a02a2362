"""Stage runs (one parent per stage invocation) and child runs (one per trial)."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from pydantic import BaseModel

from multitune.tracking import tags as T
from multitune.tracking.connection import Tracking, current, lost_server, no_retries

logger = logging.getLogger(__name__)
_BATCH = 100  # MLflow's limit of params or tags per log_batch call
_MAX_VALUE = 6000  # MLflow's limit on a param value's length
_MAX_ERROR = 5000
_END_STATUSES = ("FINISHED", "FAILED", "KILLED")


@dataclass(frozen=True)
class RunHandle:
    """One MLflow run, written through the client (no global active-run state)."""

    run_id: str
    tracking: Tracking

    def log_params(self, params: BaseModel | Mapping[str, Any]) -> None:
        """Log params flattened to dotted keys (`train.lr`), lists and None as JSON."""
        log_params(self.run_id, params, tracking=self.tracking)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log metrics; nested mappings are flattened with `/` (`val/task/accuracy`)."""
        log_metrics(self.run_id, metrics, step=step, tracking=self.tracking)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (values as strings)."""
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for chunk in _chunks(items, _BATCH):
            self.tracking.client.log_batch(self.run_id, tags=chunk)

    def log_artifacts(self, local: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file or a directory's contents under `artifact_path` of the run."""
        local = Path(local)
        if local.is_dir():
            self.tracking.client.log_artifacts(self.run_id, str(local), artifact_path)
        else:
            self.tracking.client.log_artifact(self.run_id, str(local), artifact_path)

    def end(self, status: str = "FINISHED", error: str | None = None) -> None:
        """End the run: FINISHED, FAILED (with the error as the `error` tag) or KILLED."""
        end_run(self.run_id, status, error, tracking=self.tracking)


def base_tags(
    stage: str,
    params: BaseModel | Mapping[str, Any],
    *,
    project_root: str | Path = ".",
    data_paths: Iterable[str | Path] = (),
    data_hash: str | None = None,
) -> dict[str, str]:
    """The tags every run of a stage carries: stage, git commit, params hash, data hash."""
    commit = T.git_commit(project_root)
    tags = {
        T.STAGE: stage,
        T.GIT_COMMIT: commit,
        T.MLFLOW_GIT_COMMIT: commit.removesuffix("-dirty"),
        T.PARAMS_HASH: T.params_hash(params),
    }
    paths = list(data_paths)
    if data_hash is not None or paths:
        tags[T.DATA_HASH] = data_hash if data_hash is not None else T.data_hash(paths)
    return tags


@contextlib.contextmanager
def stage_run(
    stage: str,
    params: BaseModel | Mapping[str, Any],
    *,
    project_root: str | Path = ".",
    data_paths: Iterable[str | Path] = (),
    run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    log_params: bool = True,
) -> Iterator[RunHandle]:
    """The parent run of one stage invocation, active (MLflow fluent API) while inside.

    Ends FINISHED on success, KILLED on Ctrl-C, FAILED (with the error as a tag) on any other
    exception, which is re-raised. Ending a failed run is best-effort: when the tracking
    server itself is gone the run is left RUNNING (a rerun resumes or ends it) at once, and a
    failure to tag it never hides the error that ended it.

    Args:
        stage: The stage name (`baselines`, `sweep`, `final`), also the run name.
        params: The validated params; logged flattened and hashed into a tag.
        project_root: Where to read the git commit.
        data_paths: Files/directories whose content hash becomes the `data_hash` tag.
        run_id: Resume this run (an interrupted stage run again) instead of starting one.
        tags: Extra tags.
        log_params: Log the flattened params on the run.

    Yields:
        The run's handle; `mlflow.log_*` calls inside also go to it.
    """
    tracking = current()
    all_tags = base_tags(stage, params, project_root=project_root, data_paths=data_paths)
    all_tags.update({k: str(v) for k, v in (tags or {}).items()})
    if run_id is not None:
        active = mlflow.start_run(run_id=run_id)
    else:
        active = mlflow.start_run(
            experiment_id=tracking.experiment_id, run_name=stage, tags=all_tags
        )
    handle = RunHandle(active.info.run_id, tracking)
    try:
        if run_id is not None:
            handle.set_tags(all_tags)
        if log_params and run_id is None:
            handle.log_params(params)
        yield handle
    except KeyboardInterrupt:
        _end_failed(handle, "KILLED", None)
        raise
    except BaseException as err:
        _end_failed(handle, "FAILED", err)
        raise
    else:
        mlflow.end_run(status="FINISHED")


def _end_failed(handle: RunHandle, status: str, err: BaseException | None) -> None:
    """End the active (stage) run after a failure, without waiting on, or raising over `err`
    about, a tracking store that is itself what failed."""
    lost = lost_server(uri=handle.tracking.uri)
    try:
        if err is not None and lost is None:
            handle.set_tags({T.ERROR: _error_text(err)})
    except Exception as failed:
        logger.warning("could not tag run %s with its error: %s", handle.run_id, _brief(failed))
    # mlflow.end_run pops the active run even when the store does not answer: nothing is
    # left for MLflow's exit hook to end (and retry on) after the error is printed.
    try:
        with no_retries() if lost is not None else contextlib.nullcontext():
            mlflow.end_run(status=status)
    except Exception as failed:
        if lost is None:
            logger.warning("could not end run %s %s: %s", handle.run_id, status, _brief(failed))
    if lost is not None:
        logger.info("run %s left RUNNING: %s", handle.run_id, lost)


@contextlib.contextmanager
def resumed(run_id: str) -> Iterator[RunHandle]:
    """Make a finished run active again (nested under the active one), e.g. to log the model
    on the run that trained it; it ends FINISHED again on leaving, FAILED on an error (ended
    best-effort, as `stage_run` does: never over the error)."""
    mlflow.start_run(run_id=run_id, nested=True)
    handle = RunHandle(run_id, current())
    try:
        yield handle
    except BaseException:
        _end_failed(handle, "FAILED", None)
        raise
    mlflow.end_run(status="FINISHED")


def start_child(
    parent_run_id: str,
    name: str,
    tags: Mapping[str, Any],
    *,
    tracking: Tracking | None = None,
) -> RunHandle:
    """Start a child run of `parent_run_id` (a trial of a sweep) without making it active."""
    tracking = tracking or current()
    all_tags = {k: str(v) for k, v in tags.items()}
    all_tags[T.MLFLOW_PARENT] = parent_run_id
    run = tracking.client.create_run(tracking.experiment_id, tags=all_tags, run_name=name)
    return RunHandle(run.info.run_id, tracking)


def find_child(
    parent_run_id: str, tag: str, value: str, *, tracking: Tracking | None = None
) -> RunHandle | None:
    """The child run of `parent_run_id` whose `tag` equals `value` (a resumed trial's run)."""
    tracking = tracking or current()
    runs = tracking.client.search_runs(
        [tracking.experiment_id],
        filter_string=f"tags.`{T.MLFLOW_PARENT}` = '{parent_run_id}' AND tags.`{tag}` = '{value}'",
        max_results=1,
    )
    return RunHandle(runs[0].info.run_id, tracking) if runs else None


@dataclass(frozen=True)
class StoredRun:
    """A run as a search returns it: its id, status and tags."""

    run_id: str
    status: str
    tags: dict[str, str]


def _search(where: str, tracking: Tracking, order_by: list[str] | None = None) -> list[StoredRun]:
    out: list[StoredRun] = []
    token = None
    while True:
        page = tracking.client.search_runs(
            [tracking.experiment_id],
            filter_string=where,
            order_by=order_by,
            max_results=1000,
            page_token=token,
        )
        out += [StoredRun(r.info.run_id, r.info.status, dict(r.data.tags)) for r in page]
        token = page.token
        if not token:
            return out


def child_runs(parent_run_id: str, *, tracking: Tracking | None = None) -> list[StoredRun]:
    """Every (not deleted) child run of `parent_run_id`, whatever its status."""
    return _search(f"tags.`{T.MLFLOW_PARENT}` = '{parent_run_id}'", tracking or current())


def unfinished_runs(
    tags: Mapping[str, str], *, tracking: Tracking | None = None
) -> list[StoredRun]:
    """The runs of the experiment carrying every one of `tags` that did not end FINISHED
    (interrupted or failed stage invocations), newest first."""
    where = " AND ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return _search(
        f"{where} AND attributes.status != 'FINISHED'",
        tracking or current(),
        order_by=["attributes.start_time DESC"],
    )


def download(run_id: str, artifact_path: str, dst: str | Path) -> Path:
    """Download a run's artifact (a file or directory) into the directory `dst`."""
    Path(dst).mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=artifact_path, dst_path=str(dst)
    )
    return Path(local)


def reopen(run_id: str, *, tracking: Tracking | None = None) -> RunHandle:
    """Mark an interrupted run RUNNING again, to continue logging to it."""
    tracking = tracking or current()
    tracking.client.update_run(run_id, status="RUNNING")
    return RunHandle(run_id, tracking)


def log_params(
    run_id: str, params: BaseModel | Mapping[str, Any], *, tracking: Tracking | None = None
) -> None:
    """Log params flattened to dotted keys, in batches of MLflow's limit."""
    tracking = tracking or current()
    data = params.model_dump(mode="json") if isinstance(params, BaseModel) else dict(params)
    items = [Param(k, _param_value(v)) for k, v in T.flatten(data).items()]
    for chunk in _chunks(items, _BATCH):
        tracking.client.log_batch(run_id, params=chunk)


def log_metrics(
    run_id: str,
    metrics: Mapping[str, Any],
    *,
    step: int | None = None,
    tracking: Tracking | None = None,
) -> None:
    """Log numeric metrics (nested mappings flattened with `/`); non-finite values skipped."""
    tracking = tracking or current()
    now = int(time.time() * 1000)
    items = [
        Metric(k, float(v), now, step or 0)
        for k, v in T.flatten(metrics, sep="/").items()
        if isinstance(v, int | float) and not isinstance(v, bool) and _finite(float(v))
    ]
    for chunk in _chunks(items, 1000):
        tracking.client.log_batch(run_id, metrics=chunk)


def end_run(
    run_id: str,
    status: str = "FINISHED",
    error: str | BaseException | None = None,
    *,
    tracking: Tracking | None = None,
) -> None:
    """End a run with `status`; an error is kept as the run's `error` tag.

    Ending a run FAILED or KILLED is cleanup after a failure: when the tracking server does
    not answer, the run is left RUNNING (a rerun resumes or ends it) at once, rather than
    retrying and then raising over the failure being cleaned up after.
    """
    tracking = tracking or current()
    if status not in _END_STATUSES:
        raise ValueError(f"a run ends {', '.join(_END_STATUSES)}; got {status!r}")
    if status != "FINISHED":
        lost = lost_server(uri=tracking.uri)
        if lost is not None:
            logger.info("run %s left RUNNING: %s", run_id, lost)
            return
    if error is not None:
        text = error if isinstance(error, str) else _error_text(error)
        tracking.client.set_tag(run_id, T.ERROR, text[-_MAX_ERROR:])
    tracking.client.set_terminated(run_id, status=status)


def discard(run_id: str, reason: str, *, tracking: Tracking | None = None) -> None:
    """End a run KILLED with `reason` as a tag, and soft-delete it (restorable in MLflow).

    For runs of trials an interrupted driver lost: the resumed search ran others instead.
    """
    tracking = tracking or current()
    tracking.client.set_tag(run_id, "discarded", reason)
    if tracking.client.get_run(run_id).info.status == "RUNNING":
        tracking.client.set_terminated(run_id, status="KILLED")
    tracking.client.delete_run(run_id)


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:_MAX_VALUE]


def _brief(err: BaseException) -> str:
    """An error's first line (a store's errors run to a page of SQL)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:_MAX_ERROR]


def _finite(x: float) -> bool:
    return x == x and x not in (float("inf"), float("-inf"))


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
