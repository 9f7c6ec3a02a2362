"""The bootstrap's draws: whole clusters of test rows, seeds, and percentile intervals.

A cluster is what is independent in the test split: the rows of one group (one movie, one
duplicate set). Resampling rows one by one when rows of a cluster share their outcome
treats copies as fresh evidence and makes intervals too narrow (Davison & Hinkley 1997,
Bootstrap Methods and their Application, section 3.8: resample at the top stage).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from multitune.report.comparison import MAX_NONFINITE, NAN, ScoreFn


@dataclass(frozen=True)
class RowDraw:
    """How one replicate draws its test rows: whole clusters with replacement.

    Attributes:
        n_test: Rows in the test split.
        n_groups: Clusters the rows form (`n_test` when each row is its own).
        unit: "groups" when clusters are drawn, "rows" when rows are.
        fallback: Why the groups given are not drawn ("" otherwise).
    """

    n_test: int
    n_groups: int
    unit: Literal["rows", "groups"]
    fallback: str
    _order: np.ndarray
    _starts: np.ndarray
    _sizes: np.ndarray

    @classmethod
    def of(cls, groups: np.ndarray | Sequence[int] | None, n_test: int) -> RowDraw:
        """The draw for `groups` (cluster id per test row), or one cluster per row for None.

        Raises:
            ValueError: `groups` is not one-dimensional of length `n_test`.
        """
        empty = np.zeros(0, np.intp)
        if groups is None:
            return cls(n_test, n_test, "rows", "", empty, empty, empty)
        ids = np.asarray(groups)
        if ids.ndim != 1 or len(ids) != n_test:
            raise ValueError(
                f"groups has shape {ids.shape}, expected ({n_test},): one cluster id per test "
                "row (n_test)"
            )
        labels, inverse, sizes = np.unique(ids, return_inverse=True, return_counts=True)
        if len(labels) < 2:
            why = (
                f"the groups given form {len(labels)} cluster, which cannot be resampled; "
                "test rows were resampled one by one instead"
            )
            return cls(n_test, len(labels), "rows", why, empty, empty, empty)
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        return cls(n_test, len(labels), "groups", "", order, starts, sizes)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One replicate's row indices: as many clusters as there are, with replacement,
        their rows concatenated (the count varies between replicates)."""
        if self.unit == "rows":
            # One cluster per row: the same stream as resampling rows directly.
            return rng.integers(0, self.n_test, self.n_test)
        picked = rng.integers(0, self.n_groups, self.n_groups)
        sizes = self._sizes[picked]
        # Position k of the output is row `offset within its cluster` of a drawn cluster.
        ends = np.cumsum(sizes)
        within = np.arange(int(ends[-1])) - np.repeat(ends - sizes, sizes)
        return self._order[np.repeat(self._starts[picked], sizes) + within]

    def describe(self) -> str:
        """The draw in a phrase, for `Comparison.method`."""
        if self.unit == "groups":
            return f"whole clusters of test rows ({self.n_groups} clusters, with replacement)"
        if self.fallback:
            return f"test rows one by one ({self.fallback})"
        return "test rows one by one (each row its own cluster)"


def seed_weights(rng: np.random.Generator, n: int) -> np.ndarray:
    """Share of each seed in a draw of `n` seeds with replacement."""
    return np.bincount(rng.integers(0, n, n), minlength=n) / n


def weighted_score(fns: Sequence[ScoreFn], weights: np.ndarray, idx: np.ndarray) -> float:
    """The mean over drawn seeds of their score on `idx` (seed k weighted `weights[k]`)."""
    # Each drawn seed is scored once; repeats only weigh it more.
    total = 0.0
    for k, w in enumerate(weights.tolist()):
        if w > 0:
            total += w * float(fns[k](idx))
    return total


def percentile_interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    """Percentile interval of the finite replicates; NaN when over `MAX_NONFINITE` are not."""
    finite = values[np.isfinite(values)]
    if not usable(values):
        return NAN, NAN
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)


def usable(values: np.ndarray) -> bool:
    """Whether enough replicates are finite to read an interval off them."""
    n_finite = int(np.isfinite(values).sum())
    return n_finite > 0 and values.size - n_finite <= MAX_NONFINITE * values.size
