"""Tiny synthetic data for trainer tests: two modalities, all five task types, partly labelled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from multitune.config import Params, validate_params
from multitune.models.heads import TaskSpec
from multitune.training import TrainingData

TASKS: list[dict[str, Any]] = [
    {"name": "cls", "type": "classification", "column": "cls", "label_smoothing": 0.05},
    {"name": "bin", "type": "binary", "column": "bin", "pos_weight": "balanced"},
    {"name": "ml", "type": "multilabel", "column": "ml"},
    {"name": "reg", "type": "regression", "column": "reg", "loss": "huber"},
    {"name": "dist", "type": "distribution", "column": "dist", "missing": "uniform"},
]


def make_params(
    model: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    tasks: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> Params:
    """Valid params for the synthetic data."""
    raw: dict[str, Any] = {
        "data": {
            "source": "x.parquet",
            "modalities": {
                "a": {"column": "a", "encoder": {"name": "precomputed"}},
                "b": {"column": "b", "encoder": {"name": "precomputed"}},
            },
        },
        "tasks": tasks or TASKS,
        "model": {"encoder": {"hidden": 16, "dropout": 0.0}, "sharing": {"hidden": [16]}}
        | (model or {}),
        "train": {"epochs": 3, "epoch_steps": None, "batch_size": 32, "seed": 0, "device": "cpu"}
        | (train or {}),
        **extra,
    }
    return validate_params(raw)


def make_data(n: int = 240, seed: int = 0) -> TrainingData:
    """Rows whose labels depend on the features; each task misses some labels."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 12)).astype(np.float32)
    b = rng.normal(size=(n, 6)).astype(np.float32)
    z = a[:, :3] @ np.array([1.0, -1.0, 0.5]) + b[:, 0]
    cls = np.array(["x", "y", "z"])[np.digitize(z, [-0.7, 0.7])].astype(object)
    binary = np.where(a[:, 3] + 0.3 * b[:, 1] > 0.4, "yes", "no").astype(object)
    ml = [
        [t for t, on in zip("pq", (a[i, 4] > 0, b[i, 2] > 0), strict=True) if on] for i in range(n)
    ]
    reg = (2.0 * a[:, 5] - b[:, 3] + 10.0).astype(np.float64)
    dist = np.array(["lo", "mid", "hi"])[np.digitize(a[:, 6], [-0.5, 0.5])].astype(object)
    missing = rng.random((5, n)) < np.array([[0.1], [0.2], [0.1], [0.15], [0.5]])
    cls[missing[0]] = None
    binary[missing[1]] = None
    ml_labels: list[Any] = [None if missing[2][i] else ml[i] for i in range(n)]
    reg[missing[3]] = np.nan
    dist[missing[4]] = None
    split = np.array(["train"] * n, dtype=object)
    split[int(0.7 * n) : int(0.85 * n)] = "val"
    split[int(0.85 * n) :] = "test"
    params = make_params()
    specs = [TaskSpec(t, None) for t in params.tasks]
    labels = {"cls": cls, "bin": binary, "ml": ml_labels, "reg": reg, "dist": dist}
    return TrainingData.from_arrays({"a": a, "b": b}, specs, labels, split)


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    """Tiny matrices: threads only add contention on the shared CI cores."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_data() -> TrainingData:
    """240 rows, modalities a (12-d) and b (6-d), one task of each type."""
    return make_data(n=240, seed=0)


@pytest.fixture(scope="session")
def tiny_params() -> Callable[..., Params]:
    """Factory: params for `tiny_data`, with overrides of the model/train sections."""
    return make_params
