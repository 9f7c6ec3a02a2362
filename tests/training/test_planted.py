"""Planted structure: two tasks share a latent factor and one has few labels. Multi-task
training must beat single-task training on the data-poor task, by a margin, over fixed seeds."""

from __future__ import annotations

import numpy as np

from multitune.config import validate_params
from multitune.models.heads import TaskSpec
from multitune.training import TrainingData, train

SEEDS = (0, 1, 2)
MARGIN = 0.15  # accuracy on the data-poor task, mean over seeds (measured: about 0.30)
N, DIM, POOR_LABELS = 1000, 64, 24


def _planted(seed: int = 0) -> tuple[TrainingData, object]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, DIM)).astype(np.float32)
    w = rng.normal(size=DIM)
    u = x @ w / np.linalg.norm(w)  # the shared latent factor, unit variance
    rich = np.array(["lo", "mid", "hi"], dtype=object)[
        np.digitize(u + 0.2 * rng.normal(size=N), [-0.5, 0.5])
    ]
    poor = np.where(u + 0.2 * rng.normal(size=N) > 0.2, "yes", "no").astype(object)
    split = np.array(["train"] * 700 + ["val"] * 100 + ["test"] * 200, dtype=object)
    poor[np.flatnonzero(split == "train")[POOR_LABELS:]] = None  # few train labels
    params = validate_params(
        {
            "data": {
                "source": "x.parquet",
                "modalities": {"x": {"column": "x", "encoder": {"name": "precomputed"}}},
            },
            "tasks": [
                {"name": "rich", "type": "classification", "column": "rich"},
                {"name": "poor", "type": "binary", "column": "poor"},
            ],
            "model": {"encoder": {"hidden": 32, "dropout": 0.0}, "sharing": {"hidden": [16]}},
            "train": {
                "epochs": 40,
                "patience": 8,
                "batch_size": 32,
                "lr": 3e-3,
                "device": "cpu",
                "sampling": {"name": "uniform"},
            },
        }
    )
    specs = [TaskSpec(t, None) for t in params.tasks]
    data = TrainingData.from_arrays({"x": x}, specs, {"rich": rich, "poor": poor}, split)
    return data, params


def test_multi_task_beats_single_task_on_the_data_poor_task() -> None:
    data, params = _planted()
    mt, st = [], []
    for seed in SEEDS:
        mt.append(train(params, data, seed=seed).metrics["test"]["poor"]["accuracy"])
        st.append(
            train(params, data, seed=seed, tasks=["poor"]).metrics["test"]["poor"]["accuracy"]
        )
    margin = float(np.mean(mt) - np.mean(st))
    print(
        f"planted: multi-task {np.round(mt, 3)} single-task {np.round(st, 3)} margin {margin:.3f}"
    )
    assert margin >= MARGIN, (mt, st)
    assert min(mt) > max(st) - 0.02
