"""The trade-off between tasks: the Pareto front of the sweep's trials."""

from __future__ import annotations

import numpy as np


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Which points no other point dominates (every coordinate: higher is better).

    Args:
        points: `(n, k)` scores, one row per trial; rows with a NaN are never on the front.

    Returns:
        Boolean `(n,)`: True for the non-dominated rows.
    """
    points = np.asarray(points, dtype=float)
    valid = np.isfinite(points).all(axis=1)
    mask = np.zeros(len(points), dtype=bool)
    idx = np.flatnonzero(valid)
    sub = points[idx]
    for i, p in zip(idx, sub, strict=True):
        dominated = np.any(np.all(sub >= p, axis=1) & np.any(sub > p, axis=1))
        mask[i] = not dominated
    return mask
