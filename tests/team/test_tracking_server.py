"""`multitune server`: a real MLflow server on PostgreSQL or SQLite, with and without auth."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from multitune.config import validate_params
from multitune.tracking import connect, stage_run
from multitune.tracking.registry import Evidence, register
from multitune.tracking.server import ServerSpec, prepare

from .servers import MULTITUNE, mlflow_server, postgres

ADMIN = {"MLFLOW_TRACKING_USERNAME": "team-admin", "MLFLOW_TRACKING_PASSWORD": "admin-Secret-42x"}
VIEWER = ("viewer", "viewer-Secret-42x")


class Doubler(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """The smallest servable model: twice its input column."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return model_input["x"] * 2


def _params(url: str) -> Any:
    return validate_params(
        {
            "data": {
                "source": "table.parquet",
                "modalities": {"a": {"column": "a", "encoder": {"name": "precomputed"}}},
            },
            "tasks": [{"name": "y", "type": "regression", "column": "y"}],
            "mlflow": {"tracking_uri": url, "experiment": "team"},
            "registry": {"model_name": "team-model", "alias": "champion"},
        }
    )


def _get(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(":".join(auth).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_the_server_binds_loopback_and_resolves_the_project_store(tmp_path: Path) -> None:
    argv, env = prepare(ServerSpec(), tmp_path)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path}/mlflow.db"
    assert argv[argv.index("--artifacts-destination") + 1] == str(tmp_path / "mlartifacts")
    assert "--app-name" not in argv and "MLFLOW_AUTH_CONFIG_PATH" not in env


def test_auth_without_credentials_in_the_environment_is_refused(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [MULTITUNE, "server", "--auth"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "MLFLOW_TRACKING_USERNAME" in done.stderr and "Traceback" not in done.stderr


def test_auth_config_holds_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ADMIN.items():
        monkeypatch.setenv(key, value)
    argv, env = prepare(ServerSpec(auth=True), tmp_path)
    assert argv[argv.index("--app-name") + 1] == "basic-auth"
    ini = Path(env["MLFLOW_AUTH_CONFIG_PATH"]).read_text()
    assert ADMIN["MLFLOW_TRACKING_PASSWORD"] not in ini and "default_permission = READ" in ini
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == ADMIN["MLFLOW_TRACKING_PASSWORD"]


@pytest.mark.slow
def test_postgres_server_logs_registers_and_loads_over_http(tmp_path: Path) -> None:
    import psycopg

    with postgres() as pg, mlflow_server(tmp_path, pg) as url:
        params = _params(url)
        tracking = connect(params.mlflow, tmp_path)
        assert tracking.uri == url
        with stage_run("final", params, project_root=tmp_path) as run:
            run.log_metrics({"test/y/r2": 0.5})
            info = mlflow.pyfunc.log_model(
                python_model=Doubler(), name="model", pip_requirements=["pandas"]
            )
        first = register(
            info.model_uri,
            "team-model",
            "champion",
            evidence=Evidence({"t": {"accuracy": 0.6}}, {"t": {"accuracy": 0.5}}, "h", "improves"),
            fp="a",
            tags={},
        )
        second = register(
            info.model_uri,
            "team-model",
            "champion",
            evidence=Evidence(
                {"t": {"accuracy": 0.55}}, {"t": {"accuracy": 0.5}}, "h", "improves"
            ),
            fp="b",
            tags={},
        )
        assert (first.outcome, second.outcome) == ("alias moved", "challenger")
        served = mlflow.pyfunc.load_model("models:/team-model@champion")
        assert served.predict(pd.DataFrame({"x": [1.0, 2.0]})).tolist() == [2.0, 4.0]
        client = MlflowClient(url)
        assert client.get_run(run.run_id).info.status == "FINISHED"
        assert client.get_model_version_by_alias("team-model", "champion").version == "1"
        # The rows are in PostgreSQL, the artifacts under the server's artifact root.
        with psycopg.connect(pg) as conn, conn.cursor() as cur:
            cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (run.run_id,))
            assert cur.fetchone() == ("FINISHED",)
            cur.execute("SELECT count(*) FROM model_versions WHERE name = 'team-model'")
            assert cur.fetchone() == (2,)
        assert any((tmp_path / "mlartifacts").rglob("MLmodel"))
    mlflow.set_tracking_uri(None)


@pytest.mark.slow
def test_basic_auth_refuses_anonymous_and_read_only_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mlflow_server(tmp_path, "sqlite:///team.db", auth=True, env=ADMIN) as url:
        search = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _get(search) == 401
        assert _get(search, ("team-admin", "wrong")) == 401
        for key, value in ADMIN.items():
            monkeypatch.setenv(key, value)
        params = _params(url)
        tracking = connect(params.mlflow, tmp_path)
        with stage_run("sweep", params, project_root=tmp_path) as run:
            run.log_metrics({"best/delta_m": 0.1})
        # The admin creates a user; default_permission READ lets it read, not write.
        request = urllib.request.Request(
            f"{url}/api/2.0/mlflow/users/create",
            data=json.dumps({"username": VIEWER[0], "password": VIEWER[1]}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        token = base64.b64encode(
            f"{ADMIN['MLFLOW_TRACKING_USERNAME']}:{ADMIN['MLFLOW_TRACKING_PASSWORD']}".encode()
        ).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        assert _get(search, VIEWER) == 200
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", VIEWER[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", VIEWER[1])
        viewer = MlflowClient(url)
        assert viewer.get_run(run.run_id).info.status == "FINISHED"
        with pytest.raises(MlflowException, match=r"PERMISSION_DENIED|403"):
            viewer.create_run(tracking.experiment_id)
        with pytest.raises(MlflowException, match=r"PERMISSION_DENIED|403"):
            viewer.log_metric(run.run_id, "sneaky", 1.0)
        assert "sneaky" not in MlflowClient(url).get_run(run.run_id).data.metrics
    mlflow.set_tracking_uri(None)
