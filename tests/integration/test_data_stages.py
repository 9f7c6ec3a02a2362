"""ingest -> split -> embed with real `dvc repro` on a small generated table, in a fresh repo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from synthetic import synthetic_params, write_synthetic

from multitune.data import load_features, read_dataset, read_meta, read_splits, read_tasks

ROOT = Path(__file__).resolve().parents[2]
COPIED = ["dvc.yaml", ".dvcignore", "pipeline", "src/multitune/data", "src/multitune/embed",
          "src/multitune/config"]  # fmt: skip

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _repro(cwd: Path) -> str:
    done = _run(["dvc", "repro", "embed"], cwd)  # embed and what it depends on
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("project")
    for item in COPIED:
        source, target = ROOT / item, repo / item
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    table = write_synthetic(repo / "input")
    params = synthetic_params(table.relative_to(repo))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert _run(cmd, repo).returncode == 0
    return repo


def test_dvc_repro_builds_the_data(project: Path) -> None:
    out = _repro(project)
    for stage in ("ingest", "split", "embed"):
        assert f"Running stage '{stage}'" in out
    data = project / "data"
    dataset = read_dataset(data / "dataset.parquet")
    splits = read_splits(data / "splits.parquet")
    assert len(dataset) == 300 and set(splits["id"]) == set(dataset["id"])
    assert [t.name for t in read_tasks(data / "tasks.json")][:2] == ["sentiment", "topic"]
    assert set(read_meta(data / "features")) == {"text", "meta", "audio"}
    assert load_features(data / "features", "text", dataset["id"]).shape == (300, 16)
    assert (project / "dvc.lock").exists()


def test_second_repro_is_a_fast_no_op(project: Path) -> None:
    start = time.perf_counter()
    out = _repro(project)
    assert "Running stage" not in out
    assert time.perf_counter() - start < 15


def test_new_split_seed_reruns_split_and_embed_only(project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["split"]["seed"] += 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _repro(project)
    assert "Running stage 'ingest'" not in out
    assert "Running stage 'split'" in out and "Running stage 'embed'" in out


def test_a_stage_error_is_one_line_and_exit_2(project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["tasks"][1]["column"] = "topik"
    (project / "bad.yaml").write_text(yaml.safe_dump(params))
    done = _run(
        [sys.executable, "pipeline/ingest.py", "--params", "bad.yaml", "--out", "bad"], project
    )
    assert done.returncode == 2
    assert "tasks[1].column: column 'topik' not in the table" in done.stderr
    assert "did you mean 'topic'?" in done.stderr and "Traceback" not in done.stderr
    assert not (project / "bad").exists()
