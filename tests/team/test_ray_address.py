"""`sweep.ray_address` with a `ray start --head` already running on the machine: `null` runs
the stage on a Ray of its own, `auto` on that head.

The head listens on 127.0.0.2 and is found as a workstation's is: by the
`ray_current_cluster` file in the Ray temp dir of the environment (`RAY_TMPDIR`), where a
bare `ray.init()` attaches to it. The baselines stage of the tiny project runs once with
each setting, one trial per task; the trials' `node` column says where they trained.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from stage_output import noise
from tuning.project import write_project

from .servers import HEAD_IP, ray_cluster

SCRIPT = Path(__file__).parents[2] / "pipeline" / "baselines.py"
OWN_RAY_IP = "127.0.0.1"
"""Where a stage's own Ray listens (`multitune.tuning.cluster`)."""


def _baselines(root: Path, address: str | None, env: dict[str, str]) -> tuple[pd.DataFrame, str]:
    """Run the baselines stage with `sweep.ray_address: address` (a fresh SQLite store); its
    trials table and what it printed."""
    params = write_project(
        root,
        train={"epochs": 2, "patience": 2},
        baselines={"num_samples": 1},
        sweep={"ray_address": address},
    )
    out = root / "results" / "baselines"
    argv = [sys.executable, str(SCRIPT), "--params", str(params), "--data", str(root / "data")]
    done = subprocess.run(
        [*argv, "--out", str(out)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return pd.read_parquet(out / "trials.parquet"), done.stderr


@pytest.mark.slow
def test_null_is_a_ray_of_the_stages_own_and_auto_is_the_running_head(tmp_path: Path) -> None:
    with ray_cluster(tmp_path, workers=0) as head:
        current = Path(head.env["RAY_TMPDIR"]) / "ray" / "ray_current_cluster"
        assert current.read_text().strip() == head.address  # what a bare ray.init() joins
        own, printed = _baselines(tmp_path / "null", None, head.env)
        attached, _ = _baselines(tmp_path / "auto", "auto", head.env)
    assert len(own) == 3 and set(own["status"]) == {"completed"}  # one trial per task
    assert set(own["node"]) == {OWN_RAY_IP}  # not the head's node
    assert len(attached) == 3 and set(attached["status"]) == {"completed"}
    assert set(attached["node"]) == {HEAD_IP}
    # What the stage printed: its progress and result, nothing from MLflow creating the new
    # store's tables, nor Ray's token warning for the stage's own cluster.
    assert re.search(r"^baselines 3/3 done, 0 running, 0 pending \| \d+s$", printed, re.M)
    assert "baselines 3 trials -> " in printed
    assert not noise(printed), printed
