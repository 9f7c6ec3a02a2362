"""`multitune server` and `multitune ui`: MLflow's tracking server, bound to loopback.

The server is MLflow's own (`mlflow server`), started with the project's conventions:
host 127.0.0.1 unless asked otherwise, a SQLite file (relative to the project root) or a
`postgresql://` backend store, artifacts proxied by the server from an artifact root, and
optionally MLflow's basic-auth app. Credentials never come from params.yaml: the auth app's
admin is `MLFLOW_AUTH_ADMIN_USERNAME`/`_PASSWORD`, falling back to the client variables
`MLFLOW_TRACKING_USERNAME`/`_PASSWORD` that the pipeline itself reads.
"""

from __future__ import annotations

import configparser
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from multitune.errors import UserError
from multitune.tracking.connection import ARTIFACTS_DIR, resolve_uri

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
AUTH_INI = "basic_auth.ini"
PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")


@dataclass(frozen=True)
class ServerSpec:
    """How to start one MLflow tracking server.

    Attributes:
        backend_store_uri: `sqlite:///<file>` (relative paths under the project root) or
            `postgresql://user@host:port/db`.
        artifacts_destination: Where the server stores artifacts it proxies (a directory,
            relative to the project root, or a URI such as `s3://bucket/path`).
        host: Interface to bind; loopback unless the user asks otherwise.
        port: TCP port.
        workers: Server worker processes.
        auth: Run MLflow's basic-auth app.
        auth_db_uri: The auth app's user store (default: `basic_auth.db` beside the
            artifacts directory when that is local).
        default_permission: What a user may do on resources nobody granted them.
        ui_only: `multitune ui`: the same server, for browsing the project's store.
    """

    backend_store_uri: str = "sqlite:///mlflow.db"
    artifacts_destination: str = ARTIFACTS_DIR
    host: str = LOOPBACK
    port: int = 5000
    workers: int = 1
    auth: bool = False
    auth_db_uri: str | None = None
    default_permission: str = "READ"
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def url(self) -> str:
        """The URL clients use (`mlflow.tracking_uri`)."""
        return f"http://{self.host}:{self.port}"


def backend_uri(uri: str, project_root: Path) -> str:
    """The backend store URI with a relative SQLite path made absolute.

    Raises:
        UserError: not a SQLite or PostgreSQL (or other SQLAlchemy database) URI.
    """
    if uri.startswith(("http://", "https://")):
        raise UserError(
            f"--backend-store-uri {uri!r} is a tracking server, not a database; use "
            "sqlite:///mlflow.db or postgresql://user@host:port/db"
        )
    return resolve_uri(uri, project_root)


def artifacts_uri(destination: str, project_root: Path) -> str:
    """An artifact root as a URI; a plain path is made absolute under the project root."""
    if "://" in destination:
        return destination
    path = Path(destination)
    return str(path if path.is_absolute() else (project_root / path).resolve())


def write_auth_config(
    directory: Path, database_uri: str, default_permission: str = "READ"
) -> Path:
    """Write the basic-auth app's ini (no secrets in it) and return its path.

    The admin's name and password are passed to the server through the environment
    (see `server_env`), so the file can be kept or shared.

    Raises:
        UserError: an unknown permission name.
    """
    if default_permission not in PERMISSIONS:
        raise UserError(
            f"--default-permission {default_permission!r}: choose one of {', '.join(PERMISSIONS)}"
        )
    config = configparser.ConfigParser()
    config["mlflow"] = {
        "default_permission": default_permission,
        "database_uri": database_uri,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access": "false",
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / AUTH_INI
    with path.open("w") as handle:
        config.write(handle)
    return path


def server_env(spec: ServerSpec, auth_ini: Path | None, base: Mapping[str, str]) -> dict[str, str]:
    """The server's environment: telemetry off, and the auth app's config and admin.

    Raises:
        UserError: auth asked for without an admin name and password in the environment.
    """
    env = dict(base)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("DO_NOT_TRACK", "1")
    # MLflow's job runner (GenAI jobs: five queue consumers) has no use here.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if auth_ini is not None:
        user = env.get("MLFLOW_AUTH_ADMIN_USERNAME") or env.get("MLFLOW_TRACKING_USERNAME")
        password = env.get("MLFLOW_AUTH_ADMIN_PASSWORD") or env.get("MLFLOW_TRACKING_PASSWORD")
        if not user or not password:
            raise UserError(
                "--auth needs the admin's credentials in the environment: set "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or "
                "MLFLOW_AUTH_ADMIN_USERNAME/_PASSWORD); they are never read from params.yaml"
            )
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_ini)
        env["MLFLOW_AUTH_ADMIN_USERNAME"] = user
        env["MLFLOW_AUTH_ADMIN_PASSWORD"] = password
        # The auth app signs CSRF tokens with it; one server process: a fresh key is enough.
        # Several servers behind one name must share MLFLOW_FLASK_SERVER_SECRET_KEY.
        env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
    return env


def server_argv(spec: ServerSpec, project_root: Path) -> list[str]:
    """The `mlflow server` command line for `spec` (run with this interpreter)."""
    backend = backend_uri(spec.backend_store_uri, project_root)
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend,
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts_uri(spec.artifacts_destination, project_root),
        "--host",
        spec.host,
        "--port",
        str(spec.port),
        "--workers",
        str(spec.workers),
    ]
    if spec.auth:
        argv += ["--app-name", "basic-auth"]
    return argv + list(spec.extra_args)


def prepare(spec: ServerSpec, project_root: Path) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that start `spec`'s server.

    With auth, the ini goes beside a local artifact root (or into the project root).

    Raises:
        UserError: a bad store URI, or auth without credentials in the environment.
    """
    root = project_root.resolve()
    argv = server_argv(spec, root)
    auth_ini = None
    if spec.auth:
        artifacts = artifacts_uri(spec.artifacts_destination, root)
        state = Path(artifacts).parent if "://" not in artifacts else root
        db_uri = spec.auth_db_uri or f"sqlite:///{state / 'basic_auth.db'}"
        auth_ini = write_auth_config(state, resolve_uri(db_uri, root), spec.default_permission)
    return argv, server_env(spec, auth_ini, os.environ)


def serve(spec: ServerSpec, project_root: Path) -> int:
    """Run the server in the foreground until it exits or this process is signalled.

    SIGTERM/SIGINT are passed on to the server's process group, so stopping this process
    by its PID stops the server and its workers with it.

    Returns:
        The server's exit status.
    """
    argv, env = prepare(spec, project_root)
    if spec.host not in (LOOPBACK, "localhost", "::1"):
        logger.warning("the server binds %s: reachable beyond this machine", spec.host)
    logger.info("MLflow server at %s (store %s)", spec.url, argv[5])
    child = subprocess.Popen(argv, env=env, cwd=project_root, start_new_session=True)

    def _forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)

    previous = {s: signal.signal(s, _forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        # The workers share the server's process group: stop whatever is left of it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        if child.poll() is None:
            child.wait(timeout=10)


def ui_spec(tracking_uri: str, host: str = LOOPBACK, port: int = 5000) -> ServerSpec | None:
    """The server `multitune ui` starts for the project's store; None for a server URI.

    A SQLite store is opened in place, its artifacts read from the project's `mlartifacts/`.
    An http(s) tracking URI already has a UI: nothing to start.
    """
    if tracking_uri.startswith(("http://", "https://")):
        return None
    return ServerSpec(backend_store_uri=tracking_uri, host=host, port=port)
