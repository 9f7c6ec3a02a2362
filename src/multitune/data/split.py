"""The split stage's library function: rows -> train/val/test.

Rows that must stay together form *units*: rows sharing a value of `split.group_column`
(a null group is a group of its own) or identical modality inputs (duplicates). Units are
assigned by iterative stratification (Sechidis, Tsoumakas & Vlahavas 2011, "On the
Stratification of Multi-label Data"), adapted to units and to "every class in every split":
labels are taken rarest first; each unit holding the label goes to a split still lacking it,
else to the split furthest below its share of that label. Unlabelled units then fill each
split's size. `data/splits.parquet` names each row's unit (column `unit`: the unit's smallest
id). Every choice is keyed on ids and seeded hashes, never on row order, so the same
seed and rows give the same split in any order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from multitune.config import Params
from multitune.data.artifacts import SPLIT_NAMES, STREAM_ROWS, UNIT, arrow_lists
from multitune.data.columns import require_column
from multitune.data.ids import ID, row_hashes
from multitune.data.stratify import label_matrix
from multitune.errors import DataError


@dataclass
class SplitResult:
    """The assignment (`id`, `split`, sorted by id) and what the stage reports."""

    frame: pd.DataFrame
    duplicate_rows: int = 0
    duplicate_sets: int = 0
    missing: list[tuple[str, str, str]] = field(default_factory=list)

    def summary(self) -> list[str]:
        """Lines for the console."""
        counts = self.frame["split"].value_counts()
        total = len(self.frame)
        lines = [
            ", ".join(
                f"{s} {counts.get(s, 0):,} ({counts.get(s, 0) / total:.1%})" for s in SPLIT_NAMES
            )
        ]
        if self.duplicate_rows:
            lines.append(
                f"{self.duplicate_rows:,} rows share their modality inputs with another row "
                f"({self.duplicate_sets:,} sets); each set is kept in one split"
            )
        for task, label, split in self.missing:
            lines.append(
                f"task {task}: class '{label}' has no row in {split} (too few rows/groups)"
            )
        return lines


def _input_columns(params: Params) -> list[str]:
    return list(
        dict.fromkeys(c for m in params.data.modalities.values() for c in m.source_columns)
    )


def _units(
    frame: pd.DataFrame, params: Params, input_hashes: np.ndarray | None = None
) -> tuple[np.ndarray, int, int]:
    """Unit index per row, and how many rows / sets are input duplicates."""
    n = len(frame)
    if input_hashes is None:
        input_hashes = row_hashes(frame, _input_columns(params))
    inputs = pd.Series(input_hashes)
    sizes = inputs.map(inputs.value_counts())
    dup_rows, dup_sets = int((sizes > 1).sum()), int(inputs[sizes > 1].nunique())
    keys = [pd.factorize(inputs)[0]]
    group = params.split.group_column
    if group is not None:
        require_column(frame, group, "split.group_column")
        codes = pd.factorize(frame[group])[0]  # null -> -1: a group of its own
        keys.append(np.where(codes >= 0, codes + keys[-1].max() + 1, -1))
    rows = np.concatenate([np.flatnonzero(k >= 0) for k in keys])
    nodes = np.concatenate([k[k >= 0] for k in keys]) + n
    size = n + int(max(k.max() for k in keys)) + 1
    graph = sparse.coo_matrix((np.ones(len(rows)), (rows, nodes)), shape=(size, size))
    _, component = connected_components(graph, directed=False)
    return component[:n], dup_rows, dup_sets


def _seeded_rank(keys: pd.Series, seed: int) -> np.ndarray:
    digests = [hashlib.blake2b(f"{seed}\x1f{k}".encode(), digest_size=8).hexdigest() for k in keys]
    return np.argsort(np.argsort(np.array(digests), kind="stable"), kind="stable")


def split_file(path: str | Path, params: Params, batch_rows: int = STREAM_ROWS) -> SplitResult:
    """`split_rows` of `data/dataset.parquet`, in memory bounded by its small columns.

    Only the ids, the target columns and the group column are read whole; the modality
    inputs (text, vectors: most of the table) are read `batch_rows` rows at a time, each row
    kept only as the hash that finds duplicates. The result is `split_rows`' on the whole
    table.
    """
    file = pq.ParquetFile(path)
    present = set(file.schema_arrow.names)
    wanted = [ID, *(t.column for t in params.tasks), params.split.group_column]
    frame = file.read(columns=[c for c in dict.fromkeys(wanted) if c in present]).to_pandas()
    inputs = _input_columns(params)
    hashes = [
        row_hashes(batch.to_pandas(types_mapper=arrow_lists), inputs)
        for batch in file.iter_batches(batch_size=batch_rows, columns=inputs)
    ]
    input_hashes = np.concatenate(hashes) if hashes else np.empty(0, dtype=object)
    return split_rows(frame, params, input_hashes)


def split_rows(
    frame: pd.DataFrame, params: Params, input_hashes: np.ndarray | None = None
) -> SplitResult:
    """Assign every row of the ingested table to train, val or test (see module doc).

    Args:
        frame: The ingested table (ids, targets, group column; the modality columns unless
            `input_hashes` is given).
        params: The validated params.
        input_hashes: Each row's hash of its modality inputs (`row_hashes`), when the frame
            lacks those columns (`split_file`).
    """
    ids = frame[ID].astype(str).to_numpy()
    row_unit, dup_rows, dup_sets = _units(frame, params, input_hashes)
    unit_codes, unit_of_row = np.unique(row_unit, return_inverse=True)
    n_units = len(unit_codes)
    # A unit is named by its smallest id, so the seeded order ignores row order.
    unit_key = pd.Series(ids).groupby(unit_of_row).min()
    order = np.argsort(_seeded_rank(unit_key, params.split.seed), kind="stable")
    labels, names, is_class = label_matrix(frame, params.tasks)
    counts = sparse.csr_matrix(
        sparse.coo_matrix(
            (np.ones(len(labels[0])), (unit_of_row[labels[0]], labels[1])),
            shape=(n_units, len(names)),
        )
    )
    unit_size = np.bincount(unit_of_row, minlength=n_units).astype(float)
    assignment = assign_units(counts, unit_size, order, np.array(params.split.fractions))
    _every_split_filled(assignment, params, n_units)
    split = np.array(SPLIT_NAMES, dtype=object)[assignment[unit_of_row]]
    have = np.stack([np.asarray(counts[assignment == s].sum(axis=0)).ravel() for s in range(3)])
    missing = [
        (names[c][0], names[c][1], SPLIT_NAMES[s])
        for c in range(len(names))
        if is_class[c]
        for s in range(3)
        if have[s, c] == 0
    ]
    # Each row's unit, named by the unit's smallest id (independent of row order): what the
    # final stage's bootstrap and cross-validation resample and keep together.
    unit = unit_key.to_numpy()[unit_of_row]
    out = pd.DataFrame(
        {
            ID: pd.array(ids, dtype="string"),
            "split": pd.array(split, "string"),
            UNIT: pd.array(unit.astype(str), dtype="string"),
        }
    )
    out = out.sort_values(ID, kind="stable").reset_index(drop=True)
    return SplitResult(out, dup_rows, dup_sets, missing)


def _every_split_filled(assignment: np.ndarray, params: Params, n_units: int) -> None:
    """Every split with a positive fraction got rows; else a clear error naming the cause.

    Raises:
        DataError: a split is empty (too few groups or rows for three splits).
    """
    empty = [
        name
        for s, name in enumerate(SPLIT_NAMES)
        if params.split.fractions[s] > 0 and not (assignment == s).any()
    ]
    if not empty:
        return
    group = params.split.group_column
    cause = (
        f"split.group_column {group!r} leaves {n_units} group(s) of rows that must stay "
        "together; use a column with more groups, or group_column: null"
        if group is not None
        else f"the table has only {n_units} distinct row(s) once duplicates are merged"
    )
    raise DataError(f"split: {' and '.join(empty)} got no rows: {cause}")


def assign_units(
    counts: sparse.csr_matrix, unit_size: np.ndarray, order: np.ndarray, fractions: np.ndarray
) -> np.ndarray:
    """Iterative stratification over units (module doc) into ``len(fractions)`` parts: the
    split's three, or the final stage's cross-fitting folds.

    Args:
        counts: Units x labels: how many rows of each unit carry each label.
        unit_size: Rows per unit.
        order: The seeded order in which units are taken.
        fractions: Each part's share of the rows.

    Returns:
        The part index of each unit.
    """
    parts = len(fractions)
    n_units, n_labels = counts.shape
    by_label = counts.tocsc()
    position = np.empty(n_units, dtype=np.int64)
    position[order] = np.arange(n_units)
    label_target = fractions[:, None] * np.asarray(counts.sum(axis=0)).ravel()[None, :]
    size_target = fractions * unit_size.sum()
    have = np.zeros((parts, n_labels))
    size = np.zeros(parts)
    remaining = np.asarray(counts.sum(axis=0)).ravel().astype(float)
    assigned = np.full(n_units, -1)

    def put(unit: int, s: int) -> None:
        row = counts.getrow(unit)
        have[s, row.indices] += row.data
        remaining[row.indices] -= row.data
        size[s] += unit_size[unit]
        assigned[unit] = s

    while (remaining > 0).any():
        c = int(np.argmin(np.where(remaining > 0, remaining, np.inf)))
        units = by_label.indices[by_label.indptr[c] : by_label.indptr[c + 1]]
        units = units[assigned[units] < 0]
        for unit in units[np.argsort(position[units], kind="stable")]:
            lacking = have[:, c] == 0
            candidates = np.flatnonzero(lacking) if lacking.any() else np.arange(parts)
            score = [
                (label_target[s, c] - have[s, c], size_target[s] - size[s]) for s in candidates
            ]
            put(unit, int(candidates[max(range(len(candidates)), key=score.__getitem__)]))
    for unit in order[assigned[order] < 0]:
        put(unit, int(np.argmax(size_target - size)))
    return assigned
