"""The data artifacts other stages read: dataset, splits, tasks (paths, readers, writers)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import TypeAdapter

from multitune.config.tasks import CATEGORICAL_TYPES, TaskConfig
from multitune.errors import DataError
from multitune.io import atomic_path, write_json

DATA_DIR = Path("data")
DATASET = "dataset.parquet"
SPLITS = "splits.parquet"
TASKS = "tasks.json"
FEATURES = "features"
SPLIT_NAMES = ("train", "val", "test")
UNIT = "unit"
"""The splits file's column naming each row's unit (rows the split keeps together)."""
STREAM_ROWS = 65_536
"""Rows per batch wherever a table is streamed: read, hashed or written in a given order."""

_TASK_ADAPTER: TypeAdapter[Any] = TypeAdapter(TaskConfig)


@dataclass(frozen=True)
class TaskInfo:
    """One task as ingest resolved it.

    Attributes:
        config: The typed task config; for categorical tasks `config.classes` holds the
            resolved class list (given in params, or inferred and sorted).
        classes: The class labels in order (index = encoded label), or None for regression.
        n_labelled: How many rows of the dataset carry a label for this task.
    """

    config: TaskConfig
    classes: list[str] | None
    n_labelled: int

    @property
    def name(self) -> str:
        """The task's name."""
        return self.config.name

    def to_json(self) -> dict[str, Any]:
        """The tasks.json entry: the config's fields, resolved `classes`, `n_labelled`."""
        entry = self.config.model_dump(mode="json")
        entry["classes"] = self.classes
        entry["n_labelled"] = self.n_labelled
        return entry

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> TaskInfo:
        """Parse one tasks.json entry."""
        fields = dict(entry)
        n_labelled = int(fields.pop("n_labelled"))
        classes = fields.pop("classes", None)
        if fields.get("type") in CATEGORICAL_TYPES:
            fields["classes"] = classes
        return cls(_TASK_ADAPTER.validate_python(fields), classes, n_labelled)


def _existing(path: str | os.PathLike[str], what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no {what} here; run `dvc repro` to build it")
    return path


def read_dataset(
    path: str | os.PathLike[str] = DATA_DIR / DATASET,
    columns: Sequence[str] | None = None,
    *,
    arrow_vectors: bool = False,
) -> pd.DataFrame:
    """Read `data/dataset.parquet`: `id`, the modality source columns, the target columns.

    Args:
        path: The file.
        columns: Only these columns (a vector column left out is never read).
        arrow_vectors: Keep list (vector) columns as Arrow data (`pd.ArrowDtype`) instead of
            one NumPy array per row: a fraction of the memory, read by
            `multitune.embed.precomputed.stack_vectors` without a copy.
    """
    wanted = None if columns is None else list(dict.fromkeys(columns))
    table = pq.read_table(_existing(path, "dataset"), columns=wanted)
    return table.to_pandas(types_mapper=arrow_lists if arrow_vectors else None)


def arrow_lists(kind: pa.DataType) -> pd.ArrowDtype | None:
    """A `types_mapper` for `to_pandas`: lists of numbers (vectors) stay Arrow data."""
    listed = pa.types.is_list(kind) or pa.types.is_large_list(kind)
    if not (listed or pa.types.is_fixed_size_list(kind)):
        return None
    value = kind.value_type
    numeric = pa.types.is_floating(value) or pa.types.is_integer(value)
    return pd.ArrowDtype(kind) if numeric else None


def read_splits(path: str | os.PathLike[str] = DATA_DIR / SPLITS) -> pd.DataFrame:
    """Read `data/splits.parquet`: columns `id`, `split` (train, val or test) and `unit` (the
    rows that must stay together: one group of `split.group_column` or one duplicate set,
    named by its smallest id)."""
    return pq.read_table(_existing(path, "split")).to_pandas()


def read_units(path: str | os.PathLike[str], ids: np.ndarray) -> np.ndarray:
    """Each of `ids`' unit as an integer code (rows of one unit share it); a splits file
    written before units were recorded gives every row a unit of its own."""
    frame = read_splits(path)
    key = frame["id"].astype(str)
    units = frame[UNIT].astype(str) if UNIT in frame.columns else key
    mapped = pd.Series(np.asarray(ids, dtype=str)).map(pd.Series(units.to_numpy(), index=key))
    if mapped.isna().any():
        raise DataError(f"{path}: {int(mapped.isna().sum())} row id(s) have no split")
    return pd.factorize(mapped)[0].astype(np.int64)


def read_tasks(path: str | os.PathLike[str] = DATA_DIR / TASKS) -> list[TaskInfo]:
    """Read `data/tasks.json`: every task's config, resolved classes and label count."""
    raw = json.loads(_existing(path, "task list").read_text())
    return [TaskInfo.from_json(entry) for entry in raw["tasks"]]


def write_tasks(path: str | os.PathLike[str], tasks: list[TaskInfo]) -> None:
    """Write `data/tasks.json`, atomically."""
    write_json(path, {"tasks": [t.to_json() for t in tasks]})


def _plain_lists(schema: pa.Schema) -> pa.Schema:
    """`schema` with its Arrow-backed list columns recorded as plain object columns in the
    pandas metadata: pandas cannot parse a fixed-size list dtype's name back, and readers
    get those columns as one array per row, as from any other list column."""
    raw = (schema.metadata or {}).get(b"pandas")
    if raw is None:
        return schema
    meta = json.loads(raw)
    for column in meta.get("columns", []):
        kind = str(column.get("numpy_type", ""))
        if kind.endswith("[pyarrow]") and "list<" in kind:
            column["numpy_type"] = "object"
    return schema.with_metadata({**schema.metadata, b"pandas": json.dumps(meta)})


def write_parquet(
    path: str | os.PathLike[str],
    frame: pd.DataFrame | pa.Table,
    *,
    order: np.ndarray | None = None,
) -> None:
    """Write a table as parquet, atomically, without the pandas index.

    Args:
        path: The file.
        frame: The table.
        order: Write `frame`'s rows at these positions, in this order, `STREAM_ROWS` at a
            time: peak memory is `frame` plus one batch, never a reordered copy of it.
    """
    table = (
        frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    )
    schema = _plain_lists(table.schema)
    if order is None:
        with atomic_path(path) as tmp:
            pq.write_table(table.replace_schema_metadata(schema.metadata), tmp)
        return
    rows = np.asarray(order, dtype=np.int64)
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, len(rows), STREAM_ROWS):
            batch = rows[start : start + STREAM_ROWS]
            writer.write_table(pa.table([_take(c, batch) for c in table.columns], schema=schema))


def _take(column: pa.ChunkedArray, rows: np.ndarray) -> pa.Array:
    """`column`'s values at `rows`, gathered chunk by chunk: Arrow's take on a chunked
    array first concatenates the chunks (a whole copy of a vector column)."""
    if len(rows) == 0:
        return pa.array([], type=column.type)
    if column.num_chunks == 1:
        return column.chunk(0).take(rows)
    bounds = np.cumsum([0, *(len(c) for c in column.chunks)])
    chunk_of = np.searchsorted(bounds, rows, side="right") - 1
    parts, placed = [], []
    for k in np.unique(chunk_of):
        mine = np.flatnonzero(chunk_of == k)
        parts.append(column.chunk(int(k)).take(rows[mine] - bounds[k]))
        placed.append(mine)
    back = np.empty(len(rows), dtype=np.int64)
    back[np.concatenate(placed)] = np.arange(len(rows))
    return pa.concat_arrays(parts).take(back)
