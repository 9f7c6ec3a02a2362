"""Searches that grow: asked for more trials, a finished search trains only the new ones, with
a real Ray and a real MLflow store; asked for the same or fewer, it trains nothing; a changed
space starts over and says why in one line."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from multitune.config import load_params
from multitune.tuning import run_baselines, run_sweep

from .kill import all_runs
from .project import TASKS, tiny_params, write_project


def _params(root: Path, samples: int, **space: Any) -> Path:
    raw = tiny_params(root)
    raw["baselines"] |= {"num_samples": None}  # as many per task as the sweep
    raw["sweep"] |= {"num_samples": samples}
    raw["sweep"]["space"] |= space
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _run(root: Path, samples: int, **space: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both search stages as `dvc repro` runs them; their trials tables."""
    params = load_params(_params(root, samples, **space))
    run_baselines(
        params, data_dir=root / "data", out_dir=root / "results/baselines", project_root=root
    )
    run_sweep(
        params,
        data_dir=root / "data",
        baselines_dir=root / "results/baselines",
        out_dir=root / "results/sweep",
        project_root=root,
    )
    return (
        pd.read_parquet(root / "results/baselines/trials.parquet"),
        pd.read_parquet(root / "results/sweep/trials.parquet"),
    )


def _trial_runs(root: Path, stage: str) -> Counter[str]:
    """Per parent run of `stage`, its child (trial) runs in the store."""
    runs = [r for r in all_runs(root / "mlflow.db") if r.data.tags.get("stage") == stage]
    return Counter(
        r.data.tags["mlflow.parentRunId"] for r in runs if "mlflow.parentRunId" in r.data.tags
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("grow")
    write_project(root)
    return root


def test_more_trials_train_only_the_new_ones_and_fewer_train_none(
    local_ray: Any, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base2, sweep2 = _run(project, 2)
    assert Counter(base2["config/task"]) == {t["name"]: 2 for t in TASKS}
    assert len(sweep2) == 2

    base3, sweep3 = _run(project, 3)
    out = capsys.readouterr().err
    # The old trials are kept (same ids), one more per task and one more sweep trial ran.
    assert set(base2["trial_id"]) < set(base3["trial_id"])
    assert Counter(base3["config/task"]) == {t["name"]: 3 for t in TASKS}
    assert set(sweep2["trial_id"]) < set(sweep3["trial_id"]) and len(sweep3) == 3
    assert "3 more trials on top of the 6 kept" in out
    assert "1 more trial on top of the 2 kept" in out
    # MLflow: one parent per stage, one run per trial, old and new under it.
    assert list(_trial_runs(project, "baselines").values()) == [9]
    assert list(_trial_runs(project, "sweep").values()) == [3]
    # The grown trials were searched, not drawn at random again from the first seed.
    assert sweep3["config/lr"].nunique() == 3

    base_again, sweep_again = _run(project, 3)
    assert "growing" not in capsys.readouterr().err
    assert list(base_again["trial_id"]) == list(base3["trial_id"])
    assert list(sweep_again["trial_id"]) == list(sweep3["trial_id"])
    assert list(_trial_runs(project, "sweep").values()) == [3]

    base_fewer, sweep_fewer = _run(project, 2)
    assert list(_trial_runs(project, "baselines").values()) == [9]  # nothing trained
    assert set(base_fewer["trial_id"]) == set(base2["trial_id"])  # the first ones answer
    assert list(sweep_fewer["trial_id"]) == list(sweep2["trial_id"])


def test_a_changed_space_starts_over_and_says_why(
    local_ray: Any, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(project, 2)  # the search of the test above, or a new one when run alone
    capsys.readouterr()
    _, sweep = _run(project, 2, lr={"dist": "loguniform", "low": 2e-3, "high": 2e-2})
    lines = [line for line in capsys.readouterr().err.splitlines() if "a new search" in line]
    assert len(lines) == 2  # one per stage, each naming the setting
    assert all("sweep.space.lr.low" in line for line in lines), lines
    assert sweep["config/lr"].min() >= 2e-3
    assert len(_trial_runs(project, "sweep")) == 2  # a second parent run: a new search
