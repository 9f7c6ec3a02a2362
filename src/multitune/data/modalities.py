"""Modality source columns: checked and normalized for their encoder's kind of input.

* text (sentence_transformer, tfidf_svd): strings; a missing cell becomes "" but a column
  empty in every row is an error.
* numeric: float columns; NaN or inf makes a row invalid.
* vector (precomputed): one list of numbers per cell (a JSON list in a csv), all of one
  length; a missing cell, NaN or inf makes a row invalid.

Invalid rows stop ingest, or are dropped and counted when `data.invalid_rows: drop`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from multitune.config.data import DataConfig, ModalityConfig
from multitune.data.artifacts import arrow_lists
from multitune.data.columns import describe_rows, require_column
from multitune.errors import DataError


def input_kind(modality: ModalityConfig) -> str:
    """`text`, `numeric` or `vector`: what the modality's encoder reads."""
    return str(modality.encoder.input_kind)


def _vector(value: Any) -> np.ndarray | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, np.ndarray | list | tuple):
        try:
            return np.asarray(value, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            return None
    return None


def _text(frame: pd.DataFrame, column: str, key: str) -> pd.Series:
    text = frame[column].astype("string").fillna("")
    if not text.str.strip().ne("").any():
        raise DataError(f"{key}: text column '{column}' is empty in every row")
    return text


def _numeric(frame: pd.DataFrame, column: str, key: str) -> tuple[pd.Series, np.ndarray]:
    values = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    bad = frame[column].notna() & values.isna()
    if bad.any():
        example = frame[column][bad].iloc[0]
        raise DataError(f"{key}: column '{column}' holds non-numbers, e.g. {example!r}")
    return values, ~np.isfinite(values.to_numpy())


def _vectors(frame: pd.DataFrame, column: str, key: str) -> tuple[pd.Series, np.ndarray]:
    cells = frame[column]
    if (
        isinstance(cells.dtype, pd.ArrowDtype)
        and arrow_lists(cells.dtype.pyarrow_dtype) is not None
    ):
        return _arrow_vectors(cells, column, key)
    vectors = [_vector(v) for v in frame[column].to_numpy(dtype=object)]
    lengths = pd.Series([len(v) if v is not None else -1 for v in vectors])
    sizes = lengths[lengths >= 0].value_counts()
    if len(sizes) == 0:
        raise DataError(f"{key}: column '{column}' holds no vectors (lists of numbers)")
    if len(sizes) > 1:
        shown = ", ".join(f"{n} rows of length {length}" for length, n in sizes.items())
        raise DataError(f"{key}: vectors in column '{column}' differ in length: {shown}")
    invalid = np.array([v is None or not np.isfinite(v).all() for v in vectors])
    dim = int(sizes.index[0])
    flat = np.zeros((len(vectors), dim), dtype=np.float32)  # zeros: a row without one
    for i, v in enumerate(vectors):
        if v is not None:
            flat[i] = v
    # Stored as the Parquet path stores them: fixed-size float32 lists.
    stored = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), dim)
    series = pd.Series(pd.arrays.ArrowExtensionArray(stored), index=frame.index, name=column)
    return series, invalid


def _arrow_vectors(cells: pd.Series, column: str, key: str) -> tuple[pd.Series, np.ndarray]:
    """An Arrow list column (a Parquet source) checked with Arrow kernels, chunk by chunk,
    without a Python object per row, and stored as fixed-size float32 lists: each chunk a view
    of the source's when it is one already and no row lacks a vector, else one chunk's copy;
    the column is never combined into one array."""
    data = pa.array(cells.array)
    chunks = data.chunks if isinstance(data, pa.ChunkedArray) else [data]
    dims = set()
    for chunk in chunks:
        lengths = pc.list_value_length(chunk).drop_null()
        if len(lengths):
            dims |= {pc.min(lengths).as_py(), pc.max(lengths).as_py()}
    if not dims:
        raise DataError(f"{key}: column '{column}' holds no vectors (lists of numbers)")
    if len(dims) > 1:
        lengths = pc.list_value_length(pa.chunked_array(chunks, type=chunks[0].type))
        sizes = pc.value_counts(lengths.drop_null()).to_pylist()
        shown = ", ".join(f"{s['counts']} rows of length {s['values']}" for s in sizes)
        raise DataError(f"{key}: vectors in column '{column}' differ in length: {shown}")
    dim = dims.pop()
    stored, invalid, start = [], np.zeros(len(cells), dtype=bool), 0
    for chunk in chunks:
        block, bad = _vector_block(chunk, dim, column, key)
        invalid[start : start + len(chunk)] = bad
        stored.append(block)
        start += len(chunk)
    kind = pa.list_(pa.float32(), dim)
    series = pd.Series(
        pd.arrays.ArrowExtensionArray(pa.chunked_array(stored, type=kind)),
        index=cells.index,
        name=column,
    )
    return series, invalid


def _vector_block(
    chunk: pa.Array, dim: int, column: str, key: str
) -> tuple[pa.FixedSizeListArray, np.ndarray]:
    """One chunk of a vector column as fixed-size float32 lists, and its invalid rows (no
    vector, NaN or inf). A row without a vector gets a placeholder of zeros."""
    try:
        values = pc.cast(pc.list_flatten(chunk), pa.float32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(f"{key}: column '{column}' holds lists of non-numbers") from None
    flat = values.to_numpy(zero_copy_only=False)
    missing = chunk.is_null().to_numpy(zero_copy_only=False)
    invalid = missing.copy()
    finite = np.isfinite(flat.reshape(-1, dim)).all(axis=1)
    if not finite.all():
        invalid[np.flatnonzero(~missing)[~finite]] = True
    if missing.any():
        full = np.zeros((len(chunk), dim), dtype=np.float32)
        full[~missing] = flat.reshape(-1, dim)
        flat = full.reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa.float32()), dim), invalid


def normalize_modalities(frame: pd.DataFrame, data: DataConfig) -> tuple[pd.DataFrame, int]:
    """Check and normalize every modality column; handle invalid rows per `invalid_rows`.

    Returns:
        The table (invalid rows dropped when asked to) and the number of rows dropped.
    """
    frame = frame.copy()
    invalid = np.zeros(len(frame), dtype=bool)
    problems: list[str] = []
    for name, modality in data.modalities.items():
        kind = input_kind(modality)
        for j, column in enumerate(modality.source_columns):
            key = f"data.modalities.{name}." + (
                "column" if modality.column is not None else f"columns[{j}]"
            )
            require_column(frame, column, key)
            if kind == "text":
                frame[column] = _text(frame, column, key)
                continue
            values, bad = (_numeric if kind == "numeric" else _vectors)(frame, column, key)
            frame[column] = values
            if bad.any():
                problems.append(f"{key}: column '{column}', {describe_rows(np.flatnonzero(bad))}")
            invalid |= bad
    if not invalid.any():
        return frame, 0
    if data.invalid_rows == "error":
        raise DataError(
            f"{int(invalid.sum())} row(s) hold NaN, inf or no value in a numeric or vector "
            f"column: {'; '.join(problems)}. Fix them, or set data.invalid_rows: drop"
        )
    return frame[~invalid], int(invalid.sum())
