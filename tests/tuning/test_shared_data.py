"""Trials read the training data from Ray's object store without a copy of their own."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch

from multitune.training import TrainingData


def _same(a: TrainingData, b: TrainingData) -> None:
    assert a.ids.tolist() == b.ids.tolist()
    assert [t.name for t in a.tasks] == [t.name for t in b.tasks]
    for field in ("features", "targets", "labelled", "splits"):
        left, right = getattr(a, field), getattr(b, field)
        assert left.keys() == right.keys()
        for key in left:
            assert torch.equal(left[key], right[key]), (field, key)


def test_pickled_data_round_trips(synthetic_data: tuple[Path, Any]) -> None:
    data = TrainingData.from_files(*synthetic_data, device="cpu")
    _same(data, pickle.loads(pickle.dumps(data)))


def test_every_reader_of_the_object_store_shares_one_copy_of_the_features(
    local_ray: Any, synthetic_data: tuple[Path, Any]
) -> None:
    small = TrainingData.from_files(*synthetic_data, device="cpu")
    # Rows enough that the object lives in the shared store (Ray inlines small objects).
    n = 4096
    rows = torch.arange(n) % len(small.ids)
    data = replace(
        small,
        ids=np.resize(small.ids, n),
        features={m: f[rows] for m, f in small.features.items()},
        targets={t: y[rows] for t, y in small.targets.items()},
        labelled={t: y[rows] for t, y in small.labelled.items()},
        splits={s: torch.arange(n)[rows == 0] for s in small.splits},
    )
    ref = ray.put(data)

    first, second = ray.get(ref), ray.get(ref)
    _same(data, first)
    for m in data.features:  # two readers see one copy: the store's, not their own
        assert first.features[m].data_ptr() == second.features[m].data_ptr()
        assert first.features[m].data_ptr() != data.features[m].data_ptr()
