"""Artifact readers: feature matrices aligned to ids, tasks.json round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from multitune.config import BinaryTask, RegressionTask
from multitune.data import TaskInfo, features_table, load_features, read_tasks, write_tasks
from multitune.errors import DataError


def test_load_features_aligns_rows_to_requested_ids(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ids = [f"r{i}" for i in range(50)]
    vectors = rng.normal(size=(50, 6))
    pq.write_table(features_table(ids, vectors), tmp_path / "m.parquet")
    order = rng.permutation(50)
    matrix = load_features(tmp_path, "m", [ids[i] for i in order])
    assert matrix.dtype == np.float32
    assert matrix.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(matrix, vectors[order].astype(np.float32))


def test_load_features_names_missing_ids(tmp_path: Path) -> None:
    pq.write_table(features_table(["a", "b"], np.zeros((2, 3))), tmp_path / "m.parquet")
    with pytest.raises(DataError, match="1 requested id"):
        load_features(tmp_path, "m", ["a", "zzz"])
    with pytest.raises(DataError, match="no features for modality 'other'"):
        load_features(tmp_path, "other", ["a"])


def test_tasks_json_round_trip(tmp_path: Path) -> None:
    tasks = [
        TaskInfo(BinaryTask(name="s", column="s", classes=["a", "b"]), ["a", "b"], 10),
        TaskInfo(RegressionTask(name="r", column="r"), None, 7),
    ]
    write_tasks(tmp_path / "tasks.json", tasks)
    back = read_tasks(tmp_path / "tasks.json")
    assert back == tasks
    assert back[0].config.classes == ["a", "b"]
