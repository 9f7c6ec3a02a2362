"""A column that already holds vectors (audio, MIDI, image embeddings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from multitune.config.methods.encoders import PrecomputedConfig
from multitune.embed.base import ENCODERS, Encoder
from multitune.errors import DataError
from multitune.registry import MethodConfig

STATE = "precomputed.json"


def stack_vectors(cells: pd.Series, dim: int | None = None) -> np.ndarray:
    """Cells holding equal-length vectors (lists, arrays or JSON strings) -> `(n, dim)`.

    A column read with Arrow types (`read_dataset(..., arrow_vectors=True)`) becomes the
    matrix from Arrow's value buffer: a read-only view of it when the column is one float32
    chunk, else one copy; no Python object per row either way.

    Raises:
        DataError: a cell is missing, lengths differ (or differ from `dim`), or a value is
            NaN or inf.
    """
    if isinstance(cells.dtype, pd.ArrowDtype) and _is_list(cells.dtype.pyarrow_dtype):
        return _check_finite(cells.name, _arrow_matrix(cells, dim))
    rows = [json.loads(c) if isinstance(c, str) else c for c in cells.to_numpy(dtype=object)]
    if any(r is None for r in rows):
        raise DataError(
            f"column '{cells.name}': {sum(r is None for r in rows)} row(s) lack a vector"
        )
    _one_length(cells.name, {len(r) for r in rows}, dim)
    matrix = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    return _check_finite(cells.name, np.ascontiguousarray(matrix))


def _one_length(name: object, lengths: set[int], dim: int | None) -> int:
    """The one length of a column's vectors, given the `lengths` found (0 when none were)
    and the length `dim` the encoder was fitted on, if any.

    Raises:
        DataError: the lengths differ, or differ from `dim`.
    """
    if dim is not None:
        lengths = lengths | {dim}
    if len(lengths) > 1:
        raise DataError(
            f"column '{name}': vectors must all have one length; found lengths "
            f"{sorted(lengths)}" + (f" (the encoder was fitted on {dim})" if dim else "")
        )
    return next(iter(lengths), 0)


def _check_finite(name: object, matrix: np.ndarray) -> np.ndarray:
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        bad = int((~finite).sum())
        raise DataError(f"column '{name}': {bad} vector(s) hold NaN or inf")
    return matrix


def _is_list(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    )


def _arrow_matrix(cells: pd.Series, dim: int | None) -> np.ndarray:
    """An Arrow list column -> `(n, dim)` float32 (see `stack_vectors`)."""
    data = pa.array(cells.array)  # the Arrow data behind the column (`__arrow_array__`)
    column = data if isinstance(data, pa.ChunkedArray) else pa.chunked_array([data])
    if column.null_count:
        raise DataError(f"column '{cells.name}': {column.null_count} row(s) lack a vector")
    lengths = set()
    for chunk in column.chunks:
        if len(chunk):
            counts = pc.list_value_length(chunk)
            lengths |= {pc.min(counts).as_py(), pc.max(counts).as_py()}
    width = _one_length(cells.name, lengths, dim)
    blocks = [
        chunk.flatten().to_numpy(zero_copy_only=False).reshape(len(chunk), width)
        for chunk in column.chunks
    ]
    if len(blocks) == 1 and blocks[0].dtype == np.float32:
        return blocks[0]
    matrix = np.empty((len(column), width), dtype=np.float32)
    start = 0
    for block in blocks:
        matrix[start : start + len(block)] = block
        start += len(block)
    return matrix


@ENCODERS.register(PrecomputedConfig)
class PrecomputedEncoder(Encoder):
    """Passes the vectors through as float32; `fit` records their length."""

    fit_rows: ClassVar[int | None] = 1
    identity: ClassVar[bool] = True

    def __init__(self, config: MethodConfig) -> None:
        super().__init__(config)
        self._dim: int | None = None

    def fit(self, frame: pd.DataFrame) -> None:
        """Record the vectors' length (the stage gives one row: `transform` checks all)."""
        if not len(frame):
            raise DataError(f"column '{frame.columns[0]}': no train rows to fit on")
        self._dim = stack_vectors(frame.iloc[:, 0]).shape[1]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The column's vectors as a `(n, dim)` float32 matrix."""
        matrix = stack_vectors(frame.iloc[:, 0], self._dim)
        self._dim = matrix.shape[1]
        return matrix

    @property
    def dim(self) -> int:
        """The vectors' length (known after `fit` or `transform`)."""
        if self._dim is None:
            raise RuntimeError("precomputed encoder: dim is known after fit or transform")
        return self._dim

    def save(self, directory: Path) -> None:
        """Write the expected length as JSON."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / STATE).write_text(json.dumps({"dim": self.dim}))

    @classmethod
    def load(cls, config: MethodConfig, directory: Path) -> PrecomputedEncoder:
        """Restore the expected length."""
        encoder = cls(config)
        encoder._dim = int(json.loads((directory / STATE).read_text())["dim"])
        return encoder

    def describe(self) -> dict[str, Any]:
        """meta.json entry."""
        return {"encoder": "precomputed", "dim": self.dim}
