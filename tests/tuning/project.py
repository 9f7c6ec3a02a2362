"""A tiny project on disk for search tests: data artifacts written directly, params.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from multitune.config import validate_params
from multitune.data import TaskInfo, features_table, write_parquet, write_tasks
from multitune.io import write_json

TASKS: list[dict[str, Any]] = [
    {"name": "bin", "type": "binary", "column": "bin"},
    {"name": "cls", "type": "classification", "column": "cls"},
    {"name": "reg", "type": "regression", "column": "reg"},
]


def tiny_params(root: Path, **sections: Any) -> dict[str, Any]:
    """Params for the tiny project: small model, few epochs, a small conditional space."""
    raw: dict[str, Any] = {
        "data": {
            "source": "table.parquet",
            "modalities": {
                "a": {"column": "a", "encoder": {"name": "precomputed"}},
                "b": {"column": "b", "encoder": {"name": "precomputed"}},
            },
        },
        "tasks": TASKS,
        "model": {"encoder": {"hidden": 8, "dropout": 0.0}, "sharing": {"hidden": [8]}},
        "train": {
            "epochs": 3,
            "epoch_steps": None,
            "batch_size": 64,
            "patience": 3,
            "device": "cpu",
        },
        "baselines": {"num_samples": 2, "scheduler": {"name": "none"}},
        "sweep": {
            "num_samples": 3,
            "search": {"seed": 0, "n_startup_trials": 2},
            "scheduler": {"name": "asha", "grace_period": 1},
            "space": {
                "lr": {"dist": "loguniform", "low": 1e-3, "high": 1e-2},
                "sampling": {
                    "choice": [
                        "proportional",
                        {
                            "name": "temperature",
                            "temperature": {"dist": "uniform", "low": 1, "high": 4},
                        },
                    ]
                },
                "weighting": {
                    "name": "static",
                    "weights": {"dist": "loguniform", "low": 0.5, "high": 2.0},
                },
            },
        },
        "mlflow": {"tracking_uri": "sqlite:///mlflow.db", "experiment": "tests"},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return raw


def write_project(root: Path, n: int = 240, seed: int = 0, **sections: Any) -> Path:
    """Write data/ artifacts and params.yaml under `root`; return the params path."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 6)).astype(np.float32)
    b = rng.normal(size=(n, 4)).astype(np.float32)
    ids = [f"r{i:04d}" for i in range(n)]
    z = a[:, 0] + b[:, 0]
    frame = pd.DataFrame(
        {
            "id": ids,
            "a": list(a),
            "b": list(b),
            "bin": np.where(a[:, 1] > 0, "yes", "no"),
            "cls": np.array(["x", "y", "z"])[np.digitize(z, [-0.7, 0.7])],
            "reg": 2 * a[:, 2] - b[:, 1] + 0.1 * rng.normal(size=n),
        }
    )
    frame.loc[rng.random(n) < 0.2, "cls"] = None
    data = root / "data"
    write_parquet(data / "dataset.parquet", frame)
    split = np.where(
        np.arange(n) < 0.7 * n, "train", np.where(np.arange(n) < 0.85 * n, "val", "test")
    )
    write_parquet(data / "splits.parquet", pd.DataFrame({"id": ids, "split": split}))
    params = validate_params(tiny_params(root, **sections))
    infos = []
    for task in params.tasks:
        column = frame[task.column]
        classes = None if task.type == "regression" else sorted(column.dropna().unique())
        infos.append(TaskInfo(task, classes, int(column.notna().sum())))
    write_tasks(data / "tasks.json", infos)
    features = data / "features"
    for name, matrix in (("a", a), ("b", b)):
        write_parquet(features / f"{name}.parquet", features_table(ids, matrix))
    write_json(
        features / "meta.json",
        {m: {"encoder": "precomputed", "dim": int(x.shape[1])} for m, x in (("a", a), ("b", b))},
    )
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params(root, **sections), sort_keys=False))
    return path
