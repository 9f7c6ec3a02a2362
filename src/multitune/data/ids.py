"""Row ids: the user's id column, or ids derived from row content.

A derived id is a hash of the row's modality and target cells, so it stays the same when rows
are reordered, added or removed. Rows whose hashed content is identical are told apart by
their rank when sorted by a hash of their remaining cells; rows identical in every cell are
interchangeable, so which of them gets which id changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from multitune.data.artifacts import STREAM_ROWS
from multitune.data.columns import describe_rows, require_column
from multitune.errors import DataError

ID = "id"
_SEP = b"\x1f"


def _cell_bytes(value: Any) -> bytes:
    """A canonical byte form of one cell: equal cells give equal bytes, whatever the dtype."""
    if isinstance(value, np.ndarray | list | tuple):
        array = np.asarray(value)
        if array.dtype.kind in "biuf":
            return b"v" + np.ascontiguousarray(array, dtype=np.float64).tobytes()
        return b"l" + json.dumps([str(v) for v in array.tolist()]).encode()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return b"n"
    if isinstance(value, bool | np.bool_):
        return b"b" + str(bool(value)).encode()
    if isinstance(value, int | float | np.integer | np.floating):
        return b"f" + repr(float(value)).encode()
    return b"s" + str(value).encode()


def row_hashes(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """A hex digest per row of the cells in `columns` (object array, frame order).

    Rows are hashed a block at a time. A vector column held as Arrow data (fixed-size or
    plain lists of numbers) is read as a matrix of each block's rows, never as one Python
    object per row; its cells hash as the same vectors held as arrays do.
    """
    out = np.empty(len(frame), dtype=object)
    for start in range(0, len(frame), STREAM_ROWS):
        block = frame.iloc[start : start + STREAM_ROWS]
        cols = [_cells(block[c]) for c in columns]
        for i in range(len(block)):
            h = hashlib.blake2b(digest_size=8)
            for col in cols:
                h.update(col(i))
                h.update(_SEP)
            out[start + i] = h.hexdigest()
    return out


def _cells(column: pd.Series) -> Callable[[int], bytes]:
    """Row `i`'s canonical bytes (`_cell_bytes`) of one block of a column."""
    kind = column.dtype.pyarrow_dtype if isinstance(column.dtype, pd.ArrowDtype) else None
    if kind is not None and pa.types.is_fixed_size_list(kind):
        value = kind.value_type
        if pa.types.is_floating(value) or pa.types.is_integer(value):
            data = pa.array(column.array)
            chunks = data.chunks if isinstance(data, pa.ChunkedArray) else [data]
            missing = np.concatenate(
                [c.is_null().to_numpy(zero_copy_only=False) for c in chunks] or [np.zeros(0, bool)]
            )
            matrix = np.zeros((len(column), kind.list_size), dtype=np.float64)
            matrix[~missing] = np.concatenate(
                [pc.list_flatten(c).to_numpy(zero_copy_only=False) for c in chunks]
            ).reshape(-1, kind.list_size)
            return lambda i: b"n" if missing[i] else b"v" + matrix[i].tobytes()
    cells = column.to_numpy(dtype=object)
    return lambda i: _cell_bytes(cells[i])


def content_ids(frame: pd.DataFrame, content: Sequence[str]) -> np.ndarray:
    """Ids from the cells of `content` columns, independent of row order (see module doc)."""
    key = row_hashes(frame, list(content))
    rest = [c for c in frame.columns if c not in set(content)]
    tiebreak = row_hashes(frame, rest) if rest else np.full(len(frame), "", dtype=object)
    order = pd.DataFrame({"key": key, "tie": tiebreak}).sort_values(["key", "tie"], kind="stable")
    rank = order.groupby("key", sort=False).cumcount().to_numpy()
    ids = order["key"].to_numpy(dtype=object).copy()
    dup = rank > 0
    ids[dup] = [f"{k}-{r}" for k, r in zip(ids[dup], rank[dup], strict=True)]
    out = np.empty(len(frame), dtype=object)
    out[order.index.to_numpy()] = ids
    return out


def column_ids(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The ids in the user's `data.id_column`, checked: present, never null, unique."""
    require_column(frame, column, "data.id_column")
    values = frame[column]
    if values.isna().any():
        where = describe_rows(np.flatnonzero(values.isna().to_numpy()))
        raise DataError(f"data.id_column: column '{column}' is empty in {where}")
    ids = values.astype(str).to_numpy(dtype=object)
    counts = pd.Series(ids).value_counts()
    repeated = counts[counts > 1]
    if len(repeated):
        shown = ", ".join(f"'{k}' ({n} rows)" for k, n in repeated.head(5).items())
        raise DataError(
            f"data.id_column: column '{column}' has {len(repeated)} duplicate id(s): {shown}"
        )
    return ids
