"""`multitune ui` in headless Chromium: the sweep, its trials and the registered model.

The store is the project's SQLite file with what the pipeline writes there: a sweep parent
run with trial child runs, and a registered model whose serving alias points at a version.
Screenshots land in `$MULTITUNE_SCREENSHOTS` (default: the test's temporary directory).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import yaml

from multitune.config import validate_params
from multitune.tracking import connect, stage_run, start_child
from multitune.tracking.registry import Evidence, register

from .servers import mlflow_server

TRIALS = ("trial_3f2a0001", "trial_3f2a0002", "trial_3f2a0003")
MODEL, ALIAS = "movies-mtl", "champion"


class Doubler(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """The smallest servable model."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return model_input["x"] * 2


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`)")
    return found


def _browse(url: str, screenshot: Path) -> str:
    """Render `url` in headless Chromium: save a screenshot, return the rendered DOM."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1600,1000",
        "--virtual-time-budget=20000",
    ]
    dom = ""
    for action in ([f"--screenshot={screenshot}"], ["--dump-dom"]):
        profile = tempfile.mkdtemp(prefix="mt-chromium-")
        try:
            done = subprocess.run(
                [_chromium(), *flags, f"--user-data-dir={profile}", *action, url],
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            shutil.rmtree(profile, ignore_errors=True)
        assert done.returncode == 0, done.stderr[-2000:]
        dom = done.stdout or dom
    assert screenshot.stat().st_size > 10_000, "blank screenshot"
    return dom


def _store(root: Path) -> tuple[str, str]:
    """The project's store with a sweep (parent + trials) and a registered model."""
    raw = {
        "data": {
            "source": "table.parquet",
            "modalities": {"a": {"column": "a", "encoder": {"name": "precomputed"}}},
        },
        "tasks": [{"name": "y", "type": "regression", "column": "y"}],
        "mlflow": {"tracking_uri": "sqlite:///mlflow.db", "experiment": "movies"},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    params = validate_params(raw)
    tracking = connect(params.mlflow, root)
    with stage_run("sweep", params, project_root=root) as parent:
        for i, name in enumerate(TRIALS):
            trial = start_child(parent.run_id, name, {"stage": "sweep", "trial_id": name[6:]})
            trial.log_metrics({"delta_m": 0.01 * i, "val/y/r2": 0.5 + 0.1 * i})
            trial.end()
        parent.log_metrics({"best/delta_m": 0.02})
    with stage_run("final", params, project_root=root):
        info = mlflow.pyfunc.log_model(
            python_model=Doubler(), name="model", pip_requirements=["pandas"]
        )
    register(
        info.model_uri,
        MODEL,
        ALIAS,
        evidence=Evidence({"t": {"accuracy": 0.7}}, {"t": {"accuracy": 0.5}}, "h", "improves"),
        fp="ui-test",
        tags={},
    )
    mlflow.set_tracking_uri(None)
    return tracking.experiment_id, parent.run_id


@pytest.mark.slow
def test_the_ui_shows_the_sweep_its_trials_and_the_model(tmp_path: Path) -> None:
    _chromium()
    experiment_id, parent_id = _store(tmp_path)
    shots = Path(os.environ.get("MULTITUNE_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with mlflow_server(tmp_path, "", command="ui") as url:
        runs = _browse(f"{url}/#/experiments/{experiment_id}/runs", shots / "ui-experiment.png")
        parent = _browse(
            f"{url}/#/experiments/{experiment_id}/runs/{parent_id}", shots / "ui-sweep-run.png"
        )
        model = _browse(f"{url}/#/models/{MODEL}", shots / "ui-model.png")
    assert "sweep" in runs and "final" in runs
    assert all(t in parent for t in TRIALS), "the sweep run's page lacks its trial runs"
    assert MODEL in model and ALIAS in model and "Version 1" in model
