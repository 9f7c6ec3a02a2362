"""Every row's scores for `multitune.report.stats.compare`: on the full test split (the
point estimates, per seed) and on each bootstrap replicate's joint draw (the test rows drawn
once, each side's seeds once, shared by every row and by Δm).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from multitune.report.bootstrap import RowDraw, seed_weights, weighted_score
from multitune.report.comparison import NAN, Scored


@dataclass(frozen=True)
class Scores:
    """Each row's scores. Point: (rows, seeds) on the full split, `ref` (rows,). Replicates:
    (samples, rows), seeds already averaged."""

    multi: np.ndarray
    single: np.ndarray
    network: np.ndarray
    ref: np.ndarray


def seed_counts(rows: Sequence[Scored]) -> tuple[int, int]:
    """The numbers of multi-task and single-task seeds, the same on every row.

    Raises:
        ValueError: a row without seeds, rows with different numbers of seeds, or two task
            rows for the same task and metric.
    """
    if not rows:
        return 0, 0
    n_multi, n_single = len(rows[0].multi), len(rows[0].single)
    seen: set[tuple[str, str]] = set()
    for r in rows:
        label = f"{r.kind} row {r.name!r}/{r.metric!r}"
        if not r.multi or not r.single:
            raise ValueError(f"{label} has no multi-task or no single-task seeds")
        if (len(r.multi), len(r.single)) != (n_multi, n_single):
            raise ValueError(
                f"{label} has {len(r.multi)} multi-task and {len(r.single)} single-task seeds, "
                f"the first row {n_multi} and {n_single}: a replicate draws the seeds once for "
                "every row, so every row needs the same numbers"
            )
        if r.network is not None and len(r.network) != n_single:
            raise ValueError(
                f"{label} has {len(r.network)} network seeds and {n_single} single-task "
                "seeds: the single-task network's seeds are drawn with the single-task side's "
                "draw, so pass the chosen side once per network seed"
            )
        if r.kind == "task":
            if (r.name, r.metric) in seen:
                raise ValueError(f"{label} appears twice")
            seen.add((r.name, r.metric))
    return n_multi, n_single


def point_scores(rows: Sequence[Scored], n_test: int) -> Scores:
    """Each row's score per seed on the full test split, and the reference's."""
    everything = np.arange(n_test)
    multi = np.array([[fn(everything) for fn in r.multi] for r in rows], float)
    single = np.array([[fn(everything) for fn in r.single] for r in rows], float)
    network = single.copy()
    for j, r in enumerate(rows):
        if r.network is not None:
            network[j] = [fn(everything) for fn in r.network]
    ref = np.array([NAN if r.reference is None else r.reference(everything) for r in rows])
    if not rows:
        multi = single = network = np.zeros((0, 1))
    return Scores(multi, single, network, ref)


def replicate_scores(
    rows: Sequence[Scored],
    draw: RowDraw,
    rng: np.random.Generator,
    samples: int,
    n_multi: int,
    n_single: int,
) -> Scores:
    """Each row's scores on `samples` replicates, seeds averaged with the drawn weights."""
    shape = (samples, len(rows))
    multi, single, ref = np.full(shape, NAN), np.full(shape, NAN), np.full(shape, NAN)
    network = np.full(shape, NAN)
    for b in range(samples):
        # One draw per replicate, shared by every row and by Δm.
        idx = draw.draw(rng)
        m_weights = seed_weights(rng, n_multi)
        s_weights = seed_weights(rng, n_single)
        for j, r in enumerate(rows):
            multi[b, j] = weighted_score(r.multi, m_weights, idx)
            single[b, j] = weighted_score(r.single, s_weights, idx)
            if r.reference is not None:
                ref[b, j] = float(r.reference(idx))
                if r.network is not None:  # only the floor needs the network's replicates
                    network[b, j] = weighted_score(r.network, s_weights, idx)
    own = [j for j, r in enumerate(rows) if r.network is None]
    network[:, own] = single[:, own]
    return Scores(multi, single, network, ref)
