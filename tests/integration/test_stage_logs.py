"""What a stage prints: its progress and its results, and no other library's lines (Hugging
Face's progress bars, MLflow's INFO lines and error tracebacks, Ray's token warning), unless
MULTITUNE_LOG_LEVEL asks for them (`multitune.logs`). Each test runs a real stage script; a
search stage's output is checked in `tests/team/test_ray_address.py`, which runs one on a Ray
of its own and on a fresh store."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from disks import small_tmpfs
from stage_output import noise
from synthetic import synthetic_params, write_synthetic
from tuning.project import write_project

from multitune.config import validate_params
from multitune.data import write_parquet, write_tasks
from multitune.data.ingest import ingest
from multitune.data.split import split_rows

ROOT = Path(__file__).resolve().parents[2]


def _stage(stage: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "MULTITUNE_LOG_LEVEL"} | env
    return subprocess.run(
        [sys.executable, str(ROOT / "pipeline" / f"{stage}.py"), "--params", "params.yaml"],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def text_project(tmp_path: Path) -> Path:
    """The synthetic table, ingested and split, with the bundled text encoder on `text`."""
    raw = synthetic_params(write_synthetic(tmp_path / "input").relative_to(tmp_path))
    # PyTorch, not ONNX: what is tested is the stage's output, not the export's speed.
    raw["data"]["modalities"]["text"]["encoder"] = {"name": "sentence_transformer"}
    raw["data"]["modalities"]["text"]["encoder"]["backend"] = "torch"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = validate_params(raw)
    result = ingest(params, root=tmp_path)
    result.write(tmp_path / "data" / "dataset.parquet")
    write_tasks(tmp_path / "data" / "tasks.json", result.tasks)
    write_parquet(tmp_path / "data" / "splits.parquet", split_rows(result.frame, params).frame)
    return tmp_path


def test_the_embed_stage_counts_each_modality_and_prints_no_loader_bar(
    text_project: Path,
) -> None:
    done = _stage("embed", text_project)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    for label in ("text, 1 of 3", "meta, 2 of 3", "audio, 3 of 3"):
        pattern = rf"embed \[{label}\] 300/300 rows \| \d+s"
        assert any(re.fullmatch(pattern, line) for line in lines), done.stderr
    assert not noise(done.stderr), done.stderr

    # The switch: the libraries' lines are back, the project's INFO lines with them.
    again = _stage("embed", text_project, MULTITUNE_LOG_LEVEL="info")
    assert again.returncode == 0, again.stderr
    assert "Loading weights" in again.stderr
    assert "INFO multitune.embed.stage: embedded text" in again.stderr


def test_a_wrong_log_level_is_one_line(text_project: Path) -> None:
    done = _stage("embed", text_project, MULTITUNE_LOG_LEVEL="loud")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: MULTITUNE_LOG_LEVEL: 'loud' is not a log level; set DEBUG, INFO, WARNING, "
        "ERROR, or unset it for the stage's own lines only"
    )
    assert not (text_project / "data" / "features").exists()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted afterwards; skips where mounting is not allowed."""
    with small_tmpfs(tmp_path / "disk", "2m") as mount:
        yield mount


def test_a_full_tracking_store_is_one_line_with_nothing_from_mlflow_above_it(
    tmp_path: Path, small_disk: Path
) -> None:
    store = f"sqlite:///{small_disk / 'mlflow.db'}"
    project = tmp_path / "project"
    write_project(project, mlflow={"tracking_uri": store, "experiment": "tests"})
    # The store's tables, made by another process (this one would keep the disk busy).
    tables = (
        "import sys; from multitune.config.tracking import MlflowConfig; "
        "from multitune.tracking import connect; "
        "connect(MlflowConfig(tracking_uri=sys.argv[1], experiment='tests'), '.')"
    )
    subprocess.run(
        [sys.executable, "-c", tables, store], cwd=project, check=True, capture_output=True
    )
    with (small_disk / "filler").open("wb") as filler, contextlib.suppress(OSError):
        filler.write(b"\0" * shutil.disk_usage(small_disk).free)  # then not a byte left
    done = _stage("baselines", project)
    assert done.returncode != 0
    assert done.stderr.strip() == (
        f"error: no space left on device writing {small_disk / 'mlflow.db'}: free some space "
        "and rerun"
    )


PROGRESS = re.compile(r"^baselines (\d+)/(\d+) done, .* \| (?:(\d+)m)?(\d+)s$", re.M)


@pytest.mark.slow
def test_a_search_stage_logs_its_progress_every_few_seconds_not_every_change(
    tmp_path: Path,
) -> None:
    # A log (DVC, CI) gets a progress line when the counts change, at most one every 5 s,
    # and always the last: 12 trials give 20-odd changes, not 20-odd lines.
    params = write_project(
        tmp_path,
        train={"epochs": 3, "patience": 3},
        baselines={"num_samples": 4, "max_concurrent": 1, "scheduler": {"name": "none"}},
    )
    done = subprocess.run(
        [sys.executable, str(ROOT / "pipeline" / "baselines.py"), "--params", str(params)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [
        (int(d), int(t), int(m or 0) * 60 + int(s)) for d, t, m, s in PROGRESS.findall(done.stderr)
    ]
    assert lines[-1][:2] == (12, 12), done.stderr
    at = [seconds for _, _, seconds in lines[:-1]]
    # Clocks are rounded to the second: lines 5 s apart read at least 4 s apart.
    assert all(b - a >= 4 for a, b in itertools.pairwise(at)), done.stderr
    assert len(lines) <= lines[-1][2] / 5 + 2, done.stderr
