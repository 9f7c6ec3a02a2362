"""Feature files: `data/features/<modality>.parquet` (id, vector), meta.json, and where each
modality's fitted encoder is kept (`multitune.embed.load_encoder` rebuilds it)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from multitune.data.artifacts import STREAM_ROWS
from multitune.errors import DataError

META = "meta.json"
ENCODERS_DIR = "encoders"
VECTORS = "vectors"
"""meta.json key of a modality whose vectors are a column of another file (the dataset's
column of a `precomputed` modality): `{"file": path relative to the features, "column": name}`.
That modality has no `<modality>.parquet`: the vectors are stored once, by ingest, and every
stage that reads them depends on `data/dataset.parquet`, so DVC sees each change."""


def streamed(path: str | os.PathLike[str]) -> pq.ParquetFile:
    """A Parquet file to read batch by batch with bounded memory: pages are read through a
    1 MiB buffer, not a whole column chunk (a row group's vectors) at once."""
    return pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)


def feature_path(features_dir: str | os.PathLike[str], modality: str) -> Path:
    """Where a modality's vectors live."""
    return Path(features_dir) / f"{modality}.parquet"


def encoder_dir(features_dir: str | os.PathLike[str], modality: str) -> Path:
    """Where a modality's fitted encoder state lives."""
    return Path(features_dir) / ENCODERS_DIR / modality


def features_table(ids: Sequence[str] | np.ndarray, vectors: np.ndarray) -> pa.Table:
    """An Arrow table `id`, `vector` (fixed_size_list<float32>) from a `(n, dim)` matrix."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise ValueError(f"expected a ({len(ids)}, dim) matrix, got shape {vectors.shape}")
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    return pa.table({"id": pa.array(list(ids), type=pa.string()), "vector": column})


def stored_vectors(
    dataset: str | os.PathLike[str], column: str, features_dir: str | os.PathLike[str]
) -> dict[str, str]:
    """meta.json's `VECTORS` entry for vectors kept in `dataset`'s `column`."""
    file = os.path.relpath(Path(dataset).resolve(), Path(features_dir).resolve())
    return {"file": Path(file).as_posix(), "column": column}


def vectors_source(features_dir: str | os.PathLike[str], modality: str) -> tuple[Path, str]:
    """The file and column holding `modality`'s vectors (`<modality>.parquet`'s `vector`,
    or the dataset column that meta.json names).

    Raises:
        DataError: neither exists.
    """
    path = feature_path(features_dir, modality)
    if path.exists():
        return path, "vector"
    meta = Path(features_dir) / META
    entry = json.loads(meta.read_text()).get(modality, {}) if meta.exists() else {}
    if VECTORS in entry:
        return Path(features_dir) / entry[VECTORS]["file"], str(entry[VECTORS]["column"])
    raise DataError(f"{path}: no features for modality '{modality}'; run `dvc repro embed`")


def load_features(
    features_dir: str | os.PathLike[str], modality: str, ids: Sequence[str] | np.ndarray
) -> np.ndarray:
    """One modality's vectors as a float32, C-contiguous `(len(ids), dim)` matrix.

    Row `i` is the vector of `ids[i]`. Peak memory is the matrix plus a batch of rows: the
    file (`vectors_source`) is streamed (`streamed`) and each batch copied into its rows of
    the matrix (straight, when the file holds `ids` in their order, as the stages write
    them; else by an index lookup).

    Raises:
        DataError: the vectors are missing, or some of `ids` have no vector.
    """
    path, column = vectors_source(features_dir, modality)
    if not path.exists():
        raise DataError(f"{path}: no vectors for modality '{modality}'; run `dvc repro`")
    file = streamed(path)
    vector = file.schema_arrow.field(column).type
    if not pa.types.is_fixed_size_list(vector):
        raise DataError(f"{path}: column '{column}' is {vector}, not a fixed-size list")
    stored = file.read(columns=["id"]).column("id").combine_chunks()
    wanted = pa.array(np.asarray(ids, dtype=object), type=pa.string())
    aligned = stored.equals(wanted)
    if aligned:
        rows = None
    else:
        index = pc.index_in(wanted, value_set=stored)
        if index.null_count:
            missing = wanted.filter(pc.is_null(index)).to_pylist()[:5]
            raise DataError(
                f"{path}: {index.null_count} requested id(s) have no vector, e.g. {missing}; "
                "the features are older than the dataset? run `dvc repro embed`"
            )
        rows = index.to_numpy(zero_copy_only=False)
    matrix = np.empty((len(wanted), vector.list_size), dtype=np.float32)
    start = 0
    for batch in file.iter_batches(batch_size=STREAM_ROWS, columns=[column]):
        block = _block(pa.Table.from_batches([batch]).column(column), vector.list_size)
        stop = start + len(block)
        if rows is None:
            matrix[start:stop] = block
        else:  # the requested rows whose vectors are in this block
            mine = (rows >= start) & (rows < stop)
            matrix[mine] = block[rows[mine] - start]
        start = stop
    return matrix


def _block(column: pa.ChunkedArray, dim: int) -> np.ndarray:
    """A batch's vectors `(rows, dim)`, a view of Arrow's buffer where it can be."""
    parts = [
        chunk.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim) for chunk in column.chunks
    ]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def read_meta(features_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """`data/features/meta.json`: per modality, the encoder, its version or path, the dim."""
    return json.loads((Path(features_dir) / META).read_text())  # type: ignore[no-any-return]
