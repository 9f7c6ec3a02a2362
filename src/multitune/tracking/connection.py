"""Connect to the MLflow tracking store: a project SQLite file or a server.

Which store: `MLFLOW_TRACKING_URI` when the user set it (as every MLflow tool honours it),
else `mlflow.tracking_uri` from params.yaml. A relative SQLite path resolves against the
*workspace* root: the project directory, or, for a stage that DVC runs in a temporary copy
(`dvc exp run --temp`, `dvc queue start`: `<workspace>/.dvc/tmp/exps/...`), the workspace that
copy was made from, so an experiment's runs and registered versions outlive its copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import requests
import urllib3
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from multitune.config import MlflowConfig
from multitune.errors import (
    NoSpaceError,
    TrackingServerLost,
    UserError,
    error_chain,
    explains_faults,
)

logger = logging.getLogger(__name__)

ARTIFACTS_DIR = "mlartifacts"
PROBE_TIMEOUT_S = 5.0
LOST_PROBE_TIMEOUT_S = 3.0
# MLflow retries a failed request 7 times with a backoff factor of 2: about 4 minutes before a
# dead server is reported. These ride out a blip of a few seconds (0+2+4 s of backoff, plus
# up to 1 s of jitter each) and then fail: under 10 s a request, so a stage whose code tries
# a second request after the first failed (a fallback query, a cleanup) still fails within
# half a minute. Set either variable to choose otherwise. The request timeout
# (MLFLOW_HTTP_REQUEST_TIMEOUT, 120 s) is kept: a shorter one would retry slow but live
# requests, and a retried create-run makes a duplicate run.
RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
ENV_URI = "MLFLOW_TRACKING_URI"
# DVC runs a temporary or queued experiment in a directory under `<workspace>/.dvc/tmp/exps/`.
_DVC_EXPS = (".dvc", "tmp", "exps")

_current: Tracking | None = None


@dataclass(frozen=True)
class Tracking:
    """An open tracking store: where runs go and which experiment they belong to.

    Attributes:
        uri: The resolved tracking URI (a SQLite path is absolute).
        experiment_id: The id of `mlflow.experiment`, created on first use.
        experiment_name: Its name.
    """

    uri: str
    experiment_id: str
    experiment_name: str

    @property
    def client(self) -> MlflowClient:
        """A client bound to this store (cheap: MLflow caches the store per URI)."""
        return MlflowClient(self.uri)

    @property
    def is_local_sqlite(self) -> bool:
        """Whether runs go to a SQLite file on this machine (invisible to other nodes)."""
        return self.uri.startswith("sqlite:")


def workspace_root(project_root: str | Path) -> Path:
    """The workspace a project directory belongs to: itself, or, for a DVC experiment's
    temporary copy (`<workspace>/.dvc/tmp/exps/[standalone/]tmpXXXX`), that workspace."""
    root = Path(project_root).resolve()
    for parent in root.parents:
        if parent.parts[-3:] == _DVC_EXPS:
            return parent.parents[2]
    return root


def configured_uri(mlflow_cfg: MlflowConfig) -> tuple[str, str]:
    """The tracking URI to use and where it came from (`MLFLOW_TRACKING_URI` wins)."""
    from_env = os.environ.get(ENV_URI, "").strip()
    if from_env:
        return from_env, ENV_URI
    return mlflow_cfg.tracking_uri, "mlflow.tracking_uri in params.yaml"


def resolve_uri(uri: str, project_root: Path) -> str:
    """The tracking URI with a relative SQLite path made absolute under `project_root`.

    Raises:
        UserError: a file store (`./mlruns`, `file:`), deprecated in MLflow 3.
    """
    if uri.startswith("sqlite:///"):
        rest = uri.removeprefix("sqlite:///")
        path, sep, query = rest.partition("?")
        if not path.startswith("/"):
            path = str((project_root / path).resolve())
        return f"sqlite:///{path}{sep}{query}"
    if uri.startswith("file:") or "://" not in uri:
        raise UserError(
            f"mlflow.tracking_uri: {uri!r} is a file store, which MLflow 3 deprecates; use "
            "sqlite:///mlflow.db (a file in the project) or an http(s):// tracking server"
        )
    return uri


def is_server(uri: str) -> bool:
    """Whether `uri` is an http(s) tracking server."""
    return uri.startswith(("http://", "https://"))


def probe_server(
    uri: str, timeout_s: float | None = None, origin: str = "mlflow.tracking_uri in params.yaml"
) -> None:
    """Fail fast when an http(s) tracking server does not answer.

    MLflow's own client retries for minutes before giving up; this asks the server's
    `/health` endpoint once, with a short timeout.

    Raises:
        UserError: the server is unreachable or answers with an error; names the URI.
    """
    reason = _unanswered(uri, timeout_s or PROBE_TIMEOUT_S)
    if reason is None:
        return
    if reason.startswith("HTTP "):
        raise UserError(f"MLflow tracking server {uri} answers {reason} on /health")
    raise UserError(
        f"MLflow tracking server {uri} is unreachable ({reason}); start it, or fix "
        f"{origin} (e.g. sqlite:///mlflow.db for a local store)"
    )


def _unanswered(uri: str, timeout_s: float) -> str | None:
    """Why the server at `uri` does not answer `/health` (None: it answers)."""
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as err:
        status = err.code
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return str(getattr(reason, "strerror", None) or reason).lower()
    return f"HTTP {status}" if status >= 500 else None


@explains_faults  # a stage under `console.guarded` reports it in one line, no traceback
def lost_server(
    err: BaseException | None = None, *, uri: str | None = None
) -> TrackingServerLost | None:
    """The tracking server `uri` (default: the one this process connected to), if it no
    longer answers.

    For an error met while tracking: a stage whose server died mid-run fails with MLflow's
    "Max retries exceeded" (or a `requests`/`urllib3` error); this tells that apart from
    any other failure by asking the server's `/health` once, briefly.

    Args:
        err: The error; None only asks the server. An error that came from no transport
            (nothing in its chain is MLflow's, `requests`' or `urllib3`'s, or a connection
            error) is not the server's doing: None.
        uri: The tracking URI.

    Returns:
        The error to report instead (names the URI), or None: not a server, or it answers.
    """
    uri = uri if uri is not None else _current.uri if _current is not None else ""
    if not is_server(uri) or (err is not None and not _from_transport(err)):
        return None
    reason = _unanswered(uri, LOST_PROBE_TIMEOUT_S)
    return None if reason is None else TrackingServerLost(uri, reason)


def _from_transport(err: BaseException) -> bool:
    kinds = (MlflowException, requests.RequestException, urllib3.exceptions.HTTPError)
    return any(isinstance(at, (*kinds, ConnectionError, TimeoutError)) for at in error_chain(err))


@explains_faults  # as `lost_server`
def full_store(err: BaseException) -> NoSpaceError | None:
    """The SQLite tracking store this process connected to, if `err` says its disk is full
    (SQLite's "database or disk is full": no errno, no path)."""
    if _current is None or not _current.is_local_sqlite:
        return None
    if not any("database or disk is full" in str(at) for at in error_chain(err)):
        return None
    return NoSpaceError(_current.uri.removeprefix("sqlite:///").partition("?")[0])


@contextlib.contextmanager
def no_retries() -> Iterator[None]:
    """MLflow's HTTP requests in this process fail at once while inside (for cleanup after
    the server was found gone: nothing to wait for)."""
    key = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
    before = os.environ.get(key)
    os.environ[key] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def connect(mlflow_cfg: MlflowConfig, project_root: str | Path) -> Tracking:
    """Open the tracking store, create the experiment if needed, and make both current.

    The URI is `MLFLOW_TRACKING_URI` if set, else params' (see the module docstring).
    SQLite: a relative path is relative to the workspace root (`workspace_root`); the schema
    is created under a file lock so concurrent first connections do not race on MLflow's
    migrations. Artifacts go to `<workspace>/mlartifacts/`. A server URI is probed first and
    fails within seconds; MLflow's retries are bounded (`RETRY_DEFAULTS`, unless the user set
    them) so a server that dies mid-stage fails the stage in under half a minute.

    Args:
        mlflow_cfg: The `mlflow:` section of params.
        project_root: The project directory (where params.yaml lives).

    Returns:
        The open store; also set as MLflow's tracking URI and active experiment.

    Raises:
        UserError: the store is unreachable or the URI is a deprecated file store.
    """
    global _current
    root = workspace_root(project_root)
    configured, origin = configured_uri(mlflow_cfg)
    uri = resolve_uri(configured, root)
    if origin == ENV_URI:
        logger.info("%s=%s overrides mlflow.tracking_uri in params.yaml", ENV_URI, configured)
    if is_server(uri):
        probe_server(uri, origin=origin)
        for key, value in RETRY_DEFAULTS.items():
            os.environ.setdefault(key, value)
    with _init_lock(uri):
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(mlflow_cfg.experiment)
        if experiment is None:
            location = (root / ARTIFACTS_DIR).as_uri() if uri.startswith("sqlite:") else None
            experiment_id = client.create_experiment(
                mlflow_cfg.experiment, artifact_location=location
            )
        else:
            experiment_id = experiment.experiment_id
    _set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=experiment_id)
    _current = Tracking(uri, experiment_id, mlflow_cfg.experiment)
    logger.info("tracking to %s (experiment %s)", uri, experiment_id)
    return _current


def current() -> Tracking:
    """The store opened by the last `connect` in this process.

    Raises:
        RuntimeError: `connect` has not been called.
    """
    if _current is None:
        raise RuntimeError("multitune.tracking.connect(...) must be called first")
    return _current


def _set_tracking_uri(uri: str) -> None:
    """Make `uri` MLflow's tracking URI in this process only.

    `mlflow.set_tracking_uri` also exports MLFLOW_TRACKING_URI for subprocesses; left there, it
    would read as the user's choice in every later `connect` of this process (another
    project's store) and in every subprocess it starts (a `dvc repro` of another project).
    """
    before = os.environ.get(ENV_URI)
    mlflow.set_tracking_uri(uri)
    if before is None:
        os.environ.pop(ENV_URI, None)
    else:
        os.environ[ENV_URI] = before


@contextlib.contextmanager
def _init_lock(uri: str) -> Iterator[None]:
    """Serialize MLflow's schema creation on a SQLite file across processes."""
    if not uri.startswith("sqlite:"):
        yield
        return
    # The lock is taken on the database's directory, so no lock file is left behind.
    db_dir = Path(uri.removeprefix("sqlite:///").partition("?")[0]).parent
    db_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(db_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
