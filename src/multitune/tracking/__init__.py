"""MLflow tracking: the only package that imports mlflow.

`connect` opens the store named in params; `stage_run` is the parent run of a stage
invocation; trials are child runs (`start_child`) written through the client, so several
can be open at once.
"""

from __future__ import annotations

from multitune.tracking.connection import (
    Tracking,
    configured_uri,
    connect,
    current,
    probe_server,
    resolve_uri,
    workspace_root,
)
from multitune.tracking.runs import (
    RunHandle,
    StoredRun,
    base_tags,
    child_runs,
    discard,
    download,
    end_run,
    find_child,
    log_metrics,
    log_params,
    reopen,
    resumed,
    stage_run,
    start_child,
    unfinished_runs,
)
from multitune.tracking.tags import data_hash, flatten, git_commit, params_hash

__all__ = [
    "RunHandle",
    "StoredRun",
    "Tracking",
    "base_tags",
    "child_runs",
    "configured_uri",
    "connect",
    "current",
    "data_hash",
    "discard",
    "download",
    "end_run",
    "find_child",
    "flatten",
    "git_commit",
    "log_metrics",
    "log_params",
    "params_hash",
    "probe_server",
    "reopen",
    "resolve_uri",
    "resumed",
    "stage_run",
    "start_child",
    "unfinished_runs",
    "workspace_root",
]
