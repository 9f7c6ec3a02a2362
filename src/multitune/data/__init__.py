"""The data stages' library: ingest, split, and the readers of their artifacts."""

from __future__ import annotations

from multitune.data.artifacts import (
    TaskInfo,
    read_dataset,
    read_splits,
    read_tasks,
    write_parquet,
    write_tasks,
)
from multitune.data.features import feature_path, features_table, load_features, read_meta

__all__ = [
    "TaskInfo",
    "feature_path",
    "features_table",
    "load_features",
    "read_dataset",
    "read_meta",
    "read_splits",
    "read_tasks",
    "write_parquet",
    "write_tasks",
]
