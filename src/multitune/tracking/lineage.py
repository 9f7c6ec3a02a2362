"""Lineage a registry user can follow: the data splits a run trained on, as MLflow datasets.

Each split (train, val, test) is logged as a dataset input of a run (`mlflow.log_input`'s
records, written through the client). Its digest is DVC's hash of the table it is cut from
(`data/dataset.parquet` in `dvc.lock`: the MD5 of the file's bytes), its source that file,
and its tags say which split file chose the rows (again with DVC's hash) and how many there
are. So a run in the MLflow UI names the exact data that `dvc.lock` records.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from pathlib import Path

from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from multitune.tracking.connection import Tracking, current

_CHUNK = 1 << 20


def file_md5(path: str | Path) -> str:
    """DVC's hash of a file: the MD5 of its bytes (`md5:` of the file's entry in dvc.lock)."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def split_inputs(
    dataset_file: Path, splits_file: Path, rows: Mapping[str, int], name: str
) -> list[DatasetInput]:
    """One dataset input per split.

    Args:
        dataset_file: The normalized table (`data/dataset.parquet`).
        splits_file: The id -> split assignment (`data/splits.parquet`).
        rows: Rows per split (`train`, `val`, `test`).
        name: The data's name (e.g. the source's), prefixed to each split's name.

    Returns:
        Inputs for `MlflowClient.log_inputs`, the split in the `mlflow.data.context` tag.
    """
    table_md5, splits_md5 = file_md5(dataset_file), file_md5(splits_file)
    with warnings.catch_warnings():  # MLflow registers its local-file source twice
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(Path(dataset_file).resolve()))
    out = []
    for split, count in rows.items():
        dataset = MetaDataset(source, name=f"{name}-{split}", digest=table_md5)  # type: ignore[abstract]
        tags = [
            InputTag(MLFLOW_DATASET_CONTEXT, split),
            InputTag("split_file", str(Path(splits_file).resolve())),
            InputTag("split_file_md5", splits_md5),
            InputTag("rows", str(int(count))),
        ]
        out.append(DatasetInput(dataset._to_mlflow_entity(), tags))
    return out


def log_inputs(
    run_ids: list[str], inputs: list[DatasetInput], *, tracking: Tracking | None = None
) -> None:
    """Log the same dataset inputs on each run."""
    tracking = tracking or current()
    for run_id in run_ids:
        tracking.client.log_inputs(run_id, datasets=inputs)
