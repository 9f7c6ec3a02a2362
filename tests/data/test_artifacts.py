"""Artifact readers: feature matrices aligned to ids, tasks.json round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from multitune.config import BinaryTask, RegressionTask
from multitune.data import TaskInfo, features_table, load_features, read_tasks, write_tasks
from multitune.errors import DataError


@pytest.mark.parametrize("row_group_size", [None, 7])  # one row group, or several
def test_load_features_aligns_rows_to_requested_ids(
    tmp_path: Path, row_group_size: int | None
) -> None:
    rng = np.random.default_rng(0)
    ids = [f"r{i}" for i in range(50)]
    vectors = rng.normal(size=(50, 6))
    path = tmp_path / "m.parquet"
    pq.write_table(features_table(ids, vectors), path, row_group_size=row_group_size)
    assert pq.ParquetFile(path).num_row_groups == (1 if row_group_size is None else 8)
    for order in (np.arange(50), rng.permutation(50), rng.permutation(50)[:20]):
        matrix = load_features(tmp_path, "m", [ids[i] for i in order])
        assert matrix.dtype == np.float32
        assert matrix.flags["C_CONTIGUOUS"] and matrix.flags["WRITEABLE"]
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


@pytest.mark.parametrize("chunks", [1, 3])
def test_a_table_written_in_a_given_order_holds_those_rows(
    tmp_path: Path, chunks: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd
    import pyarrow as pa

    from multitune.data import artifacts, read_dataset, write_parquet

    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(50, 4)).astype(np.float32)
    parts = np.array_split(np.arange(50), chunks)
    column = pa.chunked_array(
        [pa.FixedSizeListArray.from_arrays(pa.array(vectors[p].reshape(-1)), 4) for p in parts]
    )
    frame = pd.DataFrame(
        {
            "id": [f"r{i:02d}" for i in range(50)],
            "vec": pd.arrays.ArrowExtensionArray(column),
            "label": rng.choice(["a", "b", None], size=50),
        }
    )
    order = rng.permutation(50)
    monkeypatch.setattr(artifacts, "STREAM_ROWS", 8)
    write_parquet(tmp_path / "t.parquet", frame, order=order)
    back = read_dataset(tmp_path / "t.parquet")
    assert back["id"].tolist() == [f"r{i:02d}" for i in order]
    assert back["label"].tolist() == frame["label"].iloc[order].tolist()
    np.testing.assert_array_equal(np.stack(back["vec"].to_list()), vectors[order])
    assert pq.read_schema(tmp_path / "t.parquet").field("vec").type == pa.list_(pa.float32(), 4)
