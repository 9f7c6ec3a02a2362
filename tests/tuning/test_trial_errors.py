"""A trial whose sampled values do not validate: one line for the user, no Ray traceback.

`sweep.space.encoder_hidden: {dist: uniform, ...}` passes the load-time checks (its bounds are
whole numbers) but samples fractions for an integer setting: every trial's config is invalid.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from multitune.config import load_params
from multitune.config.space import SearchSpace
from multitune.errors import UserError
from multitune.tuning import run_sweep
from multitune.tuning.trial import TrialSpec, trial_base

from .project import TASKS, write_project

ROOT = Path(__file__).resolve().parents[2]
FRACTIONAL = {"dist": "uniform", "low": 8, "high": 16}
"""An integer setting searched as floats."""


def _project(root: Path) -> Path:
    space = {"lr": {"dist": "loguniform", "low": 1e-3, "high": 1e-2}, "encoder_hidden": FRACTIONAL}
    return write_project(root, baselines={"num_samples": 1}, sweep={"space": space})


def test_the_sampled_values_at_fault_are_named_in_one_line(tmp_path: Path) -> None:
    params = load_params(_project(tmp_path))
    spec = TrialSpec(
        base=trial_base(params, None),
        space=params.sweep.space,
        tasks=[t.name for t in params.tasks],
    )
    assert spec.config_error({"lr": 0.005, "encoder_hidden": 12.0}) is None
    problem = spec.config_error({"lr": 0.005, "encoder_hidden": 12.5})
    assert problem is not None and "\n" not in problem
    assert problem.startswith("sampled sweep.space.encoder_hidden=12.5, which does not validate")
    assert "model.encoder.hidden: Input should be a valid integer" in problem
    assert "sweep.space.lr" not in problem  # lr is not at fault
    space = SearchSpace.model_validate(
        {"encoder_hidden": FRACTIONAL, "encoder_layers": {"dist": "uniform", "low": 0, "high": 2}}
    )
    two = TrialSpec(base=trial_base(params, None), space=space, tasks=["bin"])
    both = two.config_error({"encoder_hidden": 9.5, "encoder_layers": 1.5})
    assert both is not None and "\n" not in both  # several problems: still one line
    assert "encoder_hidden=9.5" in both and "encoder_layers=1.5" in both


def test_an_invalid_sample_stops_the_sweep_with_one_line_and_a_failed_run(
    local_ray: Any, tmp_path: Path
) -> None:
    path = _project(tmp_path)
    baselines = tmp_path / "results/baselines"
    baselines.mkdir(parents=True)
    summary = {t["name"]: {"val": {"accuracy": 0.5}} for t in TASKS}
    (baselines / "baselines.json").write_text(json.dumps({"tasks": summary}))

    with pytest.raises(UserError) as err:
        run_sweep(
            load_params(path),
            data_dir=tmp_path / "data",
            baselines_dir=baselines,
            out_dir=tmp_path / "results/sweep",
            project_root=tmp_path,
        )
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("sweep trial ")
    assert "sampled sweep.space.encoder_hidden=" in message
    assert "model.encoder.hidden: Input should be a valid integer" in message
    assert "the search stopped" in message
    assert not (tmp_path / "results/sweep").exists()

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FAILED"
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    failed = [r for r in children if r.info.status == "FAILED"]
    assert failed and len(children) < 3  # the search stopped
    for run in failed:
        assert run.data.tags["error"].startswith("trial config: model.encoder.hidden: ")
        assert "retries" not in run.data.tags  # it would fail alike: not retried
    assert any(run.data.tags["trial_id"] in message for run in failed)


def test_the_baselines_stage_prints_one_error_line_without_a_traceback(tmp_path: Path) -> None:
    path = _project(tmp_path)
    done = subprocess.run(
        [sys.executable, str(ROOT / "pipeline" / "baselines.py"), "--params", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: baselines trial ")
    assert "sampled sweep.space.encoder_hidden=" in line
    assert "model.encoder.hidden" in line
    assert not (tmp_path / "results").exists()
