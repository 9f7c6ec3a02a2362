"""`TrainingData.from_files` on the data stages' artifact formats, and `multitune train`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multitune.data import TaskInfo, feature_path, features_table, write_parquet, write_tasks
from multitune.errors import DataError
from multitune.training import TrainingData, load_model
from multitune.training.command import train_command


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("proj") / "data"
    rng = np.random.default_rng(0)
    n = 90
    ids = [f"r{i:03d}" for i in range(n)]
    a = rng.normal(size=(n, 4)).astype(np.float32)
    frame = pd.DataFrame(
        {
            "id": ids,
            "lab": np.where(a[:, 0] > 0, "pos", "neg"),
            "val": a[:, 1] * 3.0,
            "tags": [["p"] if v > 0 else [] for v in a[:, 2]],
        }
    )
    frame.loc[::7, "lab"] = None
    write_parquet(d / "dataset.parquet", frame)
    splits = np.array(["train", "train", "val", "test"] * (n // 4) + ["train"] * (n % 4))
    # splits listed in another order than the dataset: rows are matched by id
    write_parquet(d / "splits.parquet", pd.DataFrame({"id": ids, "split": splits}).iloc[::-1])
    write_parquet(feature_path(d / "features", "a"), features_table(ids[::-1], a[::-1]))
    return d


def _params(tiny_params):
    from multitune.config import validate_params

    base = tiny_params().model_dump(mode="json")
    base["data"]["modalities"] = {"a": {"column": "a", "encoder": {"name": "precomputed"}}}
    base["tasks"] = [
        {"name": "lab", "type": "binary", "column": "lab"},
        {"name": "val", "type": "regression", "column": "val"},
        {"name": "tags", "type": "multilabel", "column": "tags"},
    ]
    return validate_params(base)


def _write_tasks(d: Path, params) -> None:
    classes = {"lab": ["neg", "pos"], "val": None, "tags": ["p"]}
    write_tasks(d / "tasks.json", [TaskInfo(t, classes[t.name], 0) for t in params.tasks])


def test_from_files_aligns_rows_by_id(data_dir: Path, tiny_params) -> None:
    params = _params(tiny_params)
    _write_tasks(data_dir, params)
    data = TrainingData.from_files(data_dir, params)
    frame = pd.read_parquet(data_dir / "dataset.parquet")
    assert list(data.ids) == frame["id"].tolist()
    assert data.features["a"].shape == (90, 4) and data.features["a"].is_contiguous()
    np.testing.assert_allclose(data.targets["val"].numpy(), frame["val"].to_numpy(), rtol=1e-6)
    assert int(data.labelled["lab"].sum()) == frame["lab"].notna().sum()
    assert data.targets["tags"].shape == (90, 1)
    assert sum(len(v) for v in data.splits.values()) == 90
    assert data.splits["val"].tolist() == list(range(2, 88, 4))


def test_train_command_writes_metrics_and_model(data_dir: Path, tiny_params, tmp_path) -> None:
    params = _params(tiny_params)
    _write_tasks(data_dir, params)
    out = train_command(params, tmp_path / "run", data_dir=data_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"train", "val", "test"}
    assert set(metrics["test"]) == {"lab", "val", "tags"}
    assert load_model(out / "model").task_names == ["lab", "val", "tags"]


def test_task_missing_from_tasks_json_is_explained(data_dir: Path, tiny_params) -> None:
    params = _params(tiny_params)
    write_tasks(data_dir / "tasks.json", [TaskInfo(params.tasks[0], ["neg", "pos"], 0)])
    with pytest.raises(DataError, match=r"not in .*tasks\.json; rerun `dvc repro embed`"):
        TrainingData.from_files(data_dir, params)
