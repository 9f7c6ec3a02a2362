"""The sweep warm-starts multi-task trials from the tuned single-task models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from multitune.config import load_params, validate_params
from multitune.errors import ConfigError
from multitune.tuning import run_baselines, run_sweep
from multitune.tuning.trial import TrialSpec, WarmSource, trial_base

from .project import TASKS, tiny_params, write_project

SHARED = ("encoders.", "fusion.", "sharing.")
# `cls` first: the default source is the task with the most labelled train rows (`bin`; `cls`
# misses a fifth of its labels), not the first task.
ORDER = [TASKS[1], TASKS[0], TASKS[2]]
SPACE = {
    "lr": {"dist": "loguniform", "low": 1e-3, "high": 1e-2},
    "fusion": {"choice": ["gated", "attention"]},  # the source's concat must replace them
    "trunk": {"choice": [[16], [16, 8]]},  # and its trunk these
    "freezing": {"name": "warm_start"},  # frozen all along: the trunk stays the source's
}


@pytest.fixture(scope="module")
def project(local_ray: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("warm")
    write_project(
        root,
        tasks=ORDER,
        baselines={"num_samples": 2, "scheduler": {"name": "none"}, "linear_option": True},
        sweep={"num_samples": 2, "scheduler": {"name": "none"}, "space": SPACE},
    )
    params = load_params(root / "params.yaml")
    kwargs = {"data_dir": root / "data", "project_root": root}
    run_baselines(params, out_dir=root / "results/baselines", **kwargs)
    run_sweep(
        params,
        baselines_dir=root / "results/baselines",
        out_dir=root / "results/sweep",
        **kwargs,
    )
    return root


def test_the_baselines_save_a_trunked_model_of_the_task_with_most_train_rows(
    project: Path,
) -> None:
    summary = json.loads((project / "results/baselines/baselines.json").read_text())
    assert summary["warm_start"]["default"] == "bin"
    saved = json.loads((project / "results/baselines/models/bin/model.json").read_text())
    # The linear model is tried first; the source still has a trunk to start from.
    assert saved["model_config"]["sharing"]["hidden"]
    assert (
        summary["warm_start"]["models"]["bin"]["trunk"]
        == saved["model_config"]["sharing"]["hidden"]
    )


def test_warm_started_trials_train_on_the_saved_trunk(project: Path) -> None:
    import pandas as pd

    trials = pd.read_parquet(project / "results/sweep/trials.parquet")
    assert set(trials["status"]) == {"completed"}, trials[["status", "error"]]
    best = load_params(project / "results/sweep/best.yaml")
    source_dir = project / "results/baselines/models/bin"
    saved = json.loads((source_dir / "model.json").read_text())["model_config"]
    assert best.train.freezing.name == "warm_start"
    assert best.train.freezing.task == "bin"
    assert Path(best.train.freezing.path) == source_dir
    assert best.model.fusion.name == saved["fusion"]["name"]
    assert best.model.sharing.hidden == saved["sharing"]["hidden"]

    command = ["multitune.cli", "train", "--params", "results/sweep/best.yaml", "--out", "x"]
    done = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    source = load_file(str(source_dir / "model.safetensors"))
    trained = load_file(str(project / "x/model/model.safetensors"))
    shared = [k for k in source if k.startswith(SHARED) and k in trained]
    assert any(k.startswith("sharing.") for k in shared), shared
    for key in shared:
        assert trained[key].equal(source[key]), key  # loaded, then frozen: unchanged
    heads = [k for k in trained if k.startswith("heads.cls")]
    assert heads  # a task the source never trained got its own head


def test_a_sampled_warm_start_takes_the_source_network_and_others_keep_theirs(
    tmp_path: Path,
) -> None:
    raw = tiny_params(tmp_path, sweep={"space": {"freezing": {"choice": ["none", "warm_start"]}}})
    params = validate_params(raw)
    saved = params.model.model_dump(mode="json")
    saved["sharing"]["hidden"] = [32]
    saved["encoder"]["hidden"] = 4
    source = WarmSource(path="results/baselines/models/reg", model=saved, weights=b"")
    spec = TrialSpec(
        base=trial_base(params, None),
        space=params.sweep.space,
        tasks=["bin", "cls", "reg"],
        warm_sources={"reg": source},
        warm_default="reg",
    )
    warm = spec.params({"freezing": "warm_start"})
    assert warm.train.freezing.path == source.path and warm.train.freezing.task == "reg"
    assert warm.model.sharing.hidden == [32] and warm.model.encoder.hidden == 4
    cold = spec.params({"freezing": "none"})
    assert cold.model.sharing.hidden == [8] and cold.model.encoder.hidden == 8


def test_a_warm_start_from_an_unknown_task_is_refused_when_params_load(tmp_path: Path) -> None:
    space = {"freezing": {"name": "warm_start", "task": {"choice": ["bin", "bim"]}}}
    with pytest.raises(ConfigError, match=r"warm_start.task: 'bim' is not a task; did you mean"):
        validate_params(tiny_params(tmp_path, sweep={"space": space}))
