"""The cross-fit's folds (`multitune.final.crossfit`).

`repeats` times, the table's units (a group of `split.group_column`, a duplicate set:
`multitune.data.artifacts.read_units`) are dealt into `folds` folds by the split's own
iterative stratification over every task's labels (`multitune.data.split.assign_units`), each
repeat from its own seeded order. The folds are the same for both sides and for every
candidate. In fold k the procedure trains on the other folds, carving its inner validation
from them by the same rule (the split's share of validation in train+val), so early stopping
and the linear model's C never see fold k; then it predicts fold k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from torch import Tensor

from multitune.data.split import assign_units
from multitune.errors import DataError
from multitune.training import TrainingData


@dataclass(frozen=True)
class Fold:
    """One fold of one repeat: the rows each part holds (long indices)."""

    repeat: int
    index: int
    splits: dict[str, Tensor]

    @property
    def seed_index(self) -> int:
        return self.repeat * 1000 + self.index


def _label_counts(data: TrainingData, units: np.ndarray) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Units x labels (each class of a categorical task; 'labelled' for others), rows per unit
    and each row's unit index."""
    _, unit_of_row = np.unique(units, return_inverse=True)
    n_units = int(unit_of_row.max()) + 1 if len(unit_of_row) else 0
    rows_, cols = [], []
    col = 0
    for spec in data.tasks:
        lab = data.labelled[spec.name].cpu().numpy().astype(bool)
        idx = np.flatnonzero(lab)
        if spec.type in ("classification", "binary") and data.targets[spec.name].dim() == 1:
            y = data.targets[spec.name].cpu().numpy()[idx].astype(np.int64)
            rows_.append(unit_of_row[idx])
            cols.append(col + y)
            col += int(y.max()) + 1 if len(y) else 1
        else:
            rows_.append(unit_of_row[idx])
            cols.append(np.full(len(idx), col))
            col += 1
    r = np.concatenate(rows_) if rows_ else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    counts = sparse.csr_matrix(
        sparse.coo_matrix((np.ones(len(r)), (r, c)), shape=(n_units, max(col, 1)))
    )
    return counts, unit_of_row


def check_folds(data: TrainingData, units: np.ndarray, folds: int) -> None:
    """Every task's labelled rows span at least `folds` units.

    Raises:
        DataError: one line naming `final.crossfit.folds`, the task and the fix.
    """
    for t in data.task_names:
        lab = data.labelled[t].cpu().numpy().astype(bool)
        n = len(np.unique(units[lab]))
        if n < folds:
            raise DataError(
                f"final.crossfit.folds: {folds} folds, but task {t}'s labelled rows form "
                f"{n} unit(s) (groups or duplicate sets); lower final.crossfit.folds to at "
                f"most {max(2, n)} or set final.crossfit.enabled: false"
            )


def make_crossfit_folds(
    data: TrainingData,
    units: np.ndarray,
    *,
    folds: int,
    repeats: int,
    seed: int,
    val_share: float,
) -> list[Fold]:
    """Every repeat's folds over the whole table (module doc).

    Args:
        data: The data (every row is dealt, whatever its split).
        units: Each row's unit code.
        folds: Folds per repeat (>= 2).
        repeats: Repeats (>= 1), each from its own seeded order of the units.
        seed: Seed of the first repeat's order.
        val_share: The share of a fold's training rows carved as its inner validation.
    """
    check_folds(data, units, folds)
    counts, unit_of_row = _label_counts(data, units)
    n_units = counts.shape[0]
    unit_size = np.bincount(unit_of_row, minlength=n_units).astype(float)
    out: list[Fold] = []
    for r in range(repeats):
        rng = np.random.default_rng([seed, r])
        fold_of_unit = assign_units(
            counts, unit_size, rng.permutation(n_units), np.full(folds, 1.0 / folds)
        )
        for k in range(folds):
            held = fold_of_unit == k
            rest = np.flatnonzero(~held)
            inner = assign_units(
                counts[rest],
                unit_size[rest],
                rng.permutation(len(rest)),
                np.array([1.0 - val_share, val_share]),
            )
            part_of_unit = np.full(n_units, -1)
            part_of_unit[rest] = inner  # 0: inner train, 1: inner validation
            part_of_unit[held] = 2
            part = part_of_unit[unit_of_row]
            splits = {
                name: torch.as_tensor(np.flatnonzero(part == p), dtype=torch.long)
                for p, name in enumerate(("train", "val", "test"))
            }
            out.append(Fold(r, k, splits))
    return out
