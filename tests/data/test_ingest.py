"""ingest: the normalized table, stable ids, and one clear message per user mistake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from synthetic import synthetic_frame, synthetic_params, write_synthetic

from multitune.config import validate_params
from multitune.data.ingest import IngestResult, ingest
from multitune.errors import DataError


def _ingest(tmp_path: Path, frame: pd.DataFrame | None = None, **changes: Any) -> IngestResult:
    raw = synthetic_params(write_synthetic(tmp_path, frame))
    for key, value in changes.items():
        section, _, field = key.partition("__")
        raw[section][field] = value
    return ingest(validate_params(raw))


def _error(tmp_path: Path, frame: pd.DataFrame | None = None, **changes: Any) -> str:
    with pytest.raises(DataError) as info:
        _ingest(tmp_path, frame, **changes)
    return str(info.value)


def test_user_table_is_normalized(tmp_path: Path) -> None:
    result = _ingest(tmp_path)
    out = result.frame
    assert list(out.columns[:5]) == ["id", "text", "num_a", "num_b", "num_c"]
    assert out["id"].is_unique and out["id"].is_monotonic_increasing
    assert out["rating"].dtype == np.float64
    tags = out["tags"].dropna()
    assert all(isinstance(t, list) for t in tags) and ["science", "upbeat"] in tags.tolist()
    assert str(out["sentiment"].dtype) == "string"
    assert "author" in out.columns  # other columns pass through (the split's group column)
    info = {t.name: t for t in result.tasks}
    assert info["topic"].classes == ["politics", "science", "sports"]
    assert info["tags"].classes == ["politics", "science", "sports", "upbeat"]
    assert info["rating"].classes is None
    assert info["sentiment"].n_labelled == synthetic_frame()["sentiment"].notna().sum()


def test_csv_source_gives_the_same_table(tmp_path: Path) -> None:
    frame = synthetic_frame().drop(columns=["audio"])
    frame.to_csv(tmp_path / "table.csv", index=False)
    raw = synthetic_params(tmp_path / "table.csv")
    del raw["data"]["modalities"]["audio"]
    from_csv = ingest(validate_params(raw)).frame
    write_synthetic(tmp_path / "pq", frame)
    raw["data"]["source"] = str(tmp_path / "pq" / "table.parquet")
    from_parquet = ingest(validate_params(raw)).frame
    assert from_csv["id"].tolist() == from_parquet["id"].tolist()


def test_ids_do_not_depend_on_row_order(tmp_path: Path) -> None:
    frame = synthetic_frame()
    frame = pd.concat([frame, frame.iloc[:3], frame.iloc[:1]], ignore_index=True)  # duplicates
    frame.loc[len(frame) - 1, "author"] = "someone_else"  # identical content, other group
    first = _ingest(tmp_path / "a", frame).frame
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    second = _ingest(tmp_path / "b", shuffled).frame
    assert first["id"].is_unique
    pd.testing.assert_frame_equal(first, second)
    # Removing rows leaves the others' ids alone.
    third = _ingest(tmp_path / "c", frame.iloc[10:]).frame
    assert set(third["id"]) <= set(first["id"])


def test_id_column_is_used_and_checked(tmp_path: Path) -> None:
    frame = synthetic_frame()
    frame["key"] = [f"row{i}" for i in range(len(frame))]
    out = _ingest(tmp_path / "a", frame, data__id_column="key").frame
    assert sorted(out["id"]) == sorted(frame["key"])
    frame.loc[5, "key"] = "row0"
    msg = _error(tmp_path / "b", frame, data__id_column="key")
    assert msg.startswith("data.id_column:") and "'row0' (2 rows)" in msg
    frame["id"] = frame["key"]
    assert "set data.id_column: id" in _error(tmp_path / "c", frame)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda raw, f: raw["tasks"][1].update(column="topik"),
            "tasks[1].column: column 'topik' not in the table; columns are: text, num_a",
        ),
        (
            lambda raw, f: raw["data"]["modalities"]["meta"].update(columns=["num_a", "num_x"]),
            "data.modalities.meta.columns[1]: column 'num_x' not in the table",
        ),
        (
            lambda raw, f: f.__setitem__("topic", f["topic"].where(f["topic"].isna(), "sports")),
            "tasks[1] (topic): task 'topic' has one class only ('sports')",
        ),
        (
            lambda raw, f: f.__setitem__("text", None),
            "data.modalities.text.column: text column 'text' is empty in every row",
        ),
        (
            lambda raw, f: raw["tasks"][1].update(classes=["politics", "sports"]),
            "label(s) 'science'",
        ),
        (
            lambda raw, f: raw["tasks"].append(
                {"name": "t3", "type": "binary", "column": "topic"}
            ),
            "binary task 't3' needs exactly 2 classes",
        ),
        (
            lambda raw, f: raw["tasks"][1].update(class_weights={"sport": 2.0}),
            "tasks.topic.class_weights: sport not a class of column 'topic'",
        ),
        (
            lambda raw, f: f.__setitem__("sentiment", None),
            "tasks[0] (sentiment): column 'sentiment' holds no labels",
        ),
        (
            lambda raw, f: raw["data"].update(source="builtin:nope"),
            "data.source: unknown bundled dataset 'builtin:nope'",
        ),
        (
            lambda raw, f: raw["data"].update(source="missing/table.csv"),
            "data.source: no such file",
        ),
    ],
)
def test_user_mistakes_get_one_clear_message(tmp_path: Path, change: Any, expected: str) -> None:
    frame = synthetic_frame()
    raw = synthetic_params(tmp_path / "table.parquet")
    change(raw, frame)
    frame.to_parquet(tmp_path / "table.parquet", index=False)
    with pytest.raises(DataError) as info:
        ingest(validate_params(raw))
    assert expected in str(info.value)


def test_invalid_numeric_and_vector_rows_error_or_drop(tmp_path: Path) -> None:
    frame = synthetic_frame()
    frame.loc[3, "num_b"] = np.nan
    frame.loc[7, "num_c"] = np.inf
    frame.at[9, "audio"] = np.full(8, np.nan, dtype=np.float32)
    msg = _error(tmp_path / "a", frame)
    assert "3 row(s) hold NaN, inf" in msg and "data.invalid_rows: drop" in msg
    assert "data.modalities.meta.columns[1]: column 'num_b', row 3" in msg
    result = _ingest(tmp_path / "b", frame, data__invalid_rows="drop")
    assert result.dropped_invalid == 3 and len(result.frame) == len(frame) - 3
    assert any("dropped 3 rows" in line for line in result.summary())


def test_vectors_of_different_lengths_are_an_error(tmp_path: Path) -> None:
    frame = synthetic_frame()
    frame.at[4, "audio"] = np.zeros(5, dtype=np.float32)
    msg = _error(tmp_path, frame)
    assert msg.startswith("data.modalities.audio.column: vectors in column 'audio' differ")
    assert "299 rows of length 8" in msg and "1 rows of length 5" in msg


def test_parquet_vectors_are_checked_as_arrow_and_match_the_csv_path(tmp_path: Path) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from multitune.data import write_parquet

    frame = synthetic_frame()
    frame["audio"] = [np.asarray(v, dtype=np.float64) for v in frame["audio"]]  # list<double>
    csv = frame.assign(audio=[json.dumps(v.tolist()) for v in frame["audio"]])
    csv.to_csv(tmp_path / "table.csv", index=False)
    raw = synthetic_params(write_synthetic(tmp_path / "pq", frame))
    from_parquet = ingest(validate_params(raw)).frame
    raw["data"]["source"] = str(tmp_path / "table.csv")
    from_csv = ingest(validate_params(raw)).frame
    assert from_csv["id"].tolist() == from_parquet["id"].tolist()
    np.testing.assert_array_equal(
        np.stack(from_parquet["audio"].to_list()), np.stack(from_csv["audio"].to_list())
    )
    write_parquet(tmp_path / "dataset.parquet", from_parquet)
    stored = pq.read_schema(tmp_path / "dataset.parquet").field("audio").type
    assert stored == pa.list_(pa.float32(), 8)  # fixed-size float32, as embed reads it

    frame.at[5, "audio"] = None  # a row without a vector is an invalid row
    msg = _error(tmp_path / "missing", frame)
    assert "1 row(s) hold NaN, inf or no value" in msg and "column 'audio', row" in msg


def test_the_stage_writes_the_table_sorted_a_batch_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from multitune.data import artifacts, read_dataset

    shuffled = synthetic_frame().sample(frac=1.0, random_state=3)
    result = _ingest(tmp_path / "in", shuffled)
    monkeypatch.setattr(artifacts, "STREAM_ROWS", 7)  # many batches, the last one short
    result.write(tmp_path / "dataset.parquet")
    stored = read_dataset(tmp_path / "dataset.parquet")
    expected = result.frame
    assert stored["id"].tolist() == sorted(stored["id"]) == expected["id"].tolist()
    for column in ("text", "sentiment", "rating", "author"):
        pd.testing.assert_series_equal(stored[column], expected[column], check_dtype=False)
    np.testing.assert_array_equal(
        np.stack(stored["audio"].to_list()), np.stack(expected["audio"].to_list())
    )
    schema = pq.read_schema(tmp_path / "dataset.parquet")
    assert schema.field("audio").type == pa.list_(pa.float32(), 8)
    assert pq.ParquetFile(tmp_path / "dataset.parquet").metadata.num_row_groups > 1


def test_csv_vectors_are_stored_as_parquet_vectors_are(tmp_path: Path) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = synthetic_frame()
    frame.assign(audio=[json.dumps(v.tolist()) for v in frame["audio"]]).to_csv(
        tmp_path / "table.csv", index=False
    )
    raw = synthetic_params(tmp_path / "table.csv")
    ingest(validate_params(raw)).write(tmp_path / "dataset.parquet")
    stored = pq.read_schema(tmp_path / "dataset.parquet").field("audio").type
    assert stored == pa.list_(pa.float32(), 8)  # what embed and the trainer read as vectors
