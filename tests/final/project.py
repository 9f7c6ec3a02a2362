"""A tiny project on disk for the final stage: the synthetic table through the real data
stages (tf-idf text, numeric, precomputed vectors), best configs as the search stages write
them (full params files), and a small `final:` section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from conftest import synthetic_params, write_synthetic

from multitune.config import Params, validate_params
from multitune.data import read_dataset, read_splits, write_parquet, write_tasks
from multitune.data.ingest import ingest
from multitune.data.split import split_rows
from multitune.embed.stage import embed

MODEL_NAME = "tiny-multitune"


def tiny_raw(source: Path, **final: Any) -> dict[str, Any]:
    """Params of the tiny project."""
    raw = synthetic_params(source)
    raw["task_groups"] = {"labels": ["sentiment", "topic"]}
    raw["model"] = {"encoder": {"hidden": 16, "dropout": 0.0}, "sharing": {"hidden": [16]}}
    raw["train"] = {
        "epochs": 3,
        "epoch_steps": None,
        "batch_size": 32,
        "patience": 3,
        "device": "cpu",
    }
    raw["final"] = {
        "seeds": 2,
        "bootstrap_samples": 100,
        "transfer": {"method": "pairwise", "epochs": 1},
        # The smallest cross-fit (2 folds, once): what is tested is its plumbing.
        "crossfit": {"folds": 2, "repeats": 1},
        **final,
    }
    raw["mlflow"] = {"tracking_uri": "sqlite:///mlflow.db", "experiment": "final-tests"}
    # A few epochs on a few hundred rows may well "hurt": these tests serve the model whatever
    # its verdict (tests/tracking covers the gate's refusal).
    raw["registry"] = {"model_name": MODEL_NAME, "alias": "champion", "allow_hurts": True}
    return raw


def write_project(root: Path, **final: Any) -> Params:
    """Data artifacts, results/{baselines,sweep} and params.yaml under `root`."""
    source = write_synthetic(root / "input")
    raw = tiny_raw(source, **final)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = validate_params(raw)
    data = root / "data"
    result = ingest(params, root=root)
    write_parquet(data / "dataset.parquet", result.frame)
    write_tasks(data / "tasks.json", result.tasks)
    write_parquet(data / "splits.parquet", split_rows(result.frame, params).frame)
    embed(
        read_dataset(data / "dataset.parquet"),
        read_splits(data / "splits.parquet"),
        params.data,
        data / "features",
    )
    best = yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False)
    (root / "results" / "sweep").mkdir(parents=True)
    (root / "results" / "sweep" / "best.yaml").write_text(best)
    (root / "results" / "baselines").mkdir(parents=True)
    for task in params.tasks:
        (root / "results" / "baselines" / f"{task.name}.yaml").write_text(best)
    return params
