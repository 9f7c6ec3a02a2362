"""Measured task transfer: pairwise runs.

For every ordered pair (A, B): B's validation primary score when the best multi-task config
is trained on {A, B}, minus B's score when it is trained on {B} alone (same config, same
seed). Positive: training with A helps B. n tasks cost n + n(n-1)/2 runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
import pandas as pd

from multitune.config import Params
from multitune.config.final import TransferConfig
from multitune.final.runs import train_logged
from multitune.final.scoring import SeedRun
from multitune.training import TrainingData
from multitune.training.metrics import primary_metric


def _with_epochs(params: Params, cfg: TransferConfig) -> Params:
    if cfg.epochs is None or cfg.epochs >= params.train.epochs:
        return params
    train = params.train.model_copy(update={"epochs": cfg.epochs})
    return params.model_copy(update={"train": train})


def pairwise_transfer(
    params: Params,
    data: TrainingData,
    cfg: TransferConfig,
    *,
    parent_run_id: str,
    seed: int,
    tags: Mapping[str, str],
) -> tuple[pd.DataFrame, list[SeedRun]]:
    """The transfer matrix (rows: A, the partner; columns: B, the scored task) and its runs."""
    params = _with_epochs(params, cfg)
    names = [t.name for t in data.tasks]
    types = {t.name: t.type for t in data.tasks}
    runs: list[SeedRun] = []

    def val(result_metrics: Mapping[str, Mapping[str, float]], task: str) -> float:
        return float(result_metrics.get(task, {}).get(primary_metric(types[task]), np.nan))

    alone: dict[str, float] = {}
    for b in names:
        rec, res = train_logged(
            params,
            data,
            parent_run_id=parent_run_id,
            kind="transfer",
            tasks=[b],
            seed=seed,
            tags=tags,
        )
        runs.append(rec)
        alone[b] = val(res.metrics["val"], b)
    matrix = pd.DataFrame(np.nan, index=names, columns=names)
    for a, b in itertools.combinations(names, 2):
        rec, res = train_logged(
            params,
            data,
            parent_run_id=parent_run_id,
            kind="transfer",
            tasks=[a, b],
            seed=seed,
            tags=tags,
        )
        runs.append(rec)
        matrix.loc[a, b] = val(res.metrics["val"], b) - alone[b]
        matrix.loc[b, a] = val(res.metrics["val"], a) - alone[a]
    return matrix, runs
