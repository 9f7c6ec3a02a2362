"""Measured task transfer: pairwise runs.

For every ordered pair (A, B): B's validation primary score when the best multi-task config
is trained on {A, B}, minus B's score when it is trained on {B} alone (same config, same
seed). Positive: training with A helps B. n tasks cost n + n(n-1)/2 runs. Every run trains
until its validation score stops improving (the same stopping rule as every other run, and
a budget in optimizer steps), so a task with many rows does not lend its partner extra
updates: what is left is transfer.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from multitune.config import Params
from multitune.config.final import TransferConfig
from multitune.final.runs import RunJob
from multitune.final.scoring import SeedRun
from multitune.training.metrics import primary_metric

KIND = "transfer"


def _with_epochs(params: Params, cfg: TransferConfig) -> Params:
    if cfg.epochs is None or cfg.epochs >= params.train.epochs:
        return params
    train = params.train.model_copy(update={"epochs": cfg.epochs})
    return params.model_copy(update={"train": train})


def transfer_jobs(
    params: Params, names: Sequence[str], cfg: TransferConfig, seed: int
) -> list[RunJob]:
    """The runs of the pairwise matrix: each task alone, then each unordered pair."""
    params = _with_epochs(params, cfg)
    groups = [(b,) for b in names] + list(itertools.combinations(names, 2))
    return [RunJob((KIND, *g), params, KIND, tuple(g), seed) for g in groups]


def transfer_matrix(
    runs: Mapping[tuple[str, ...], SeedRun], names: Sequence[str], types: Mapping[str, str]
) -> pd.DataFrame:
    """Rows: A, the partner trained with; columns: B, the scored task (val primary score).

    Args:
        runs: The finished runs by task tuple (as `transfer_jobs` groups them).
        names: The tasks, in order.
        types: Task types (for the primary metric).
    """

    def val(run: SeedRun, task: str) -> float:
        return float(run.val_metrics.get(task, {}).get(primary_metric(types[task]), np.nan))

    alone = {b: val(runs[(b,)], b) for b in names}
    matrix = pd.DataFrame(np.nan, index=list(names), columns=list(names))
    for a, b in itertools.combinations(names, 2):
        pair = runs[(a, b)]
        matrix.loc[a, b] = val(pair, b) - alone[b]
        matrix.loc[b, a] = val(pair, a) - alone[a]
    matrix.index.name = "trained with (A)"
    matrix.columns.name = "scored (B)"
    return matrix
