"""Stratification labels: each row's (task, class) memberships as sparse coordinates."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from multitune.config.tasks import TaskConfig

REGRESSION_BINS = 4


def label_matrix(
    frame: pd.DataFrame, tasks: Sequence[TaskConfig]
) -> tuple[tuple[np.ndarray, np.ndarray], list[tuple[str, str]], list[bool]]:
    """Row/label coordinates of every labelled cell, the label names, which are real classes.

    Categorical tasks give one label per class; multilabel cells one per listed class;
    regression targets one per quantile bin (stratified on, but not reported as classes).
    Returns ``((rows, label_index), [(task, label)], [is_class])``.
    """
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    names: list[tuple[str, str]] = []
    is_class: list[bool] = []
    for task in tasks:
        series = frame[task.column]
        if task.type == "regression":
            values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
            labelled = np.flatnonzero(np.isfinite(values))
            edges = np.quantile(values[labelled], np.linspace(0, 1, REGRESSION_BINS + 1)[1:-1])
            codes = np.searchsorted(edges, values[labelled], side="right")
            labels = [f"q{b + 1}" for b in range(REGRESSION_BINS)]
            row_idx = labelled
        elif task.type in ("multilabel", "token_classification"):
            exploded = series.explode().dropna()
            positions = pd.Series(np.arange(len(frame)), index=frame.index)[exploded.index]
            labels = sorted(exploded.astype(str).unique())
            codes = pd.Categorical(exploded.astype(str), categories=labels).codes
            row_idx = positions.to_numpy()
        else:
            labelled = np.flatnonzero(series.notna().to_numpy())
            values = series.iloc[labelled].astype(str)
            labels = sorted(values.unique())
            codes = pd.Categorical(values, categories=labels).codes
            row_idx = labelled
        rows.append(np.asarray(row_idx, dtype=np.int64))
        cols.append(np.asarray(codes, dtype=np.int64) + len(names))
        names += [(task.name, label) for label in labels]
        is_class += [task.type != "regression"] * len(labels)
    return (np.concatenate(rows), np.concatenate(cols)), names, is_class
