"""Cross-fitting: every labelled row held out once per repeat, units kept whole, the inner
validation carved from the training folds, and the keys refused in one line."""

from __future__ import annotations

import numpy as np
import pytest

from multitune.config import validate_params
from multitune.errors import ConfigError, DataError
from multitune.final.crossfit import CrossFit
from multitune.final.crossfit_folds import make_crossfit_folds
from multitune.models.heads import TaskSpec
from multitune.training import TrainingData

N = 400


def _data(seed: int = 0) -> tuple[TrainingData, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, 4)).astype(np.float32)
    big = np.where(x[:, 0] > 0, "y", "n").astype(object)
    small = np.array(["a", "b", "c"], dtype=object)[np.digitize(x[:, 1], [-0.4, 0.4])]
    small[::4] = None  # a quarter unlabelled
    split = np.array(["train"] * 320 + ["val"] * 40 + ["test"] * 40, dtype=object)
    params = validate_params(
        {
            "data": {
                "source": "x.parquet",
                "modalities": {"a": {"column": "a", "encoder": {"name": "precomputed"}}},
            },
            "tasks": [
                {"name": "big", "type": "binary", "column": "big"},
                {"name": "small", "type": "classification", "column": "small"},
            ],
        }
    )
    data = TrainingData.from_arrays(
        {"a": x}, [TaskSpec(t, None) for t in params.tasks], {"big": big, "small": small}, split
    )
    units = np.repeat(np.arange(N // 4), 4)  # units of 4 rows
    return data, units


def test_every_labelled_row_is_held_out_once_per_repeat_and_units_stay_whole():
    data, units = _data()
    folds = make_crossfit_folds(data, units, folds=5, repeats=2, seed=0, val_share=1 / 9)
    assert len(folds) == 10
    for r in range(2):
        held = np.concatenate([f.splits["test"].numpy() for f in folds if f.repeat == r])
        assert sorted(held.tolist()) == list(range(N))  # every row, once
    for f in folds:
        parts = {k: set(v.tolist()) for k, v in f.splits.items()}
        assert parts["train"] | parts["val"] | parts["test"] == set(range(N))
        assert not (parts["train"] & parts["val"] or parts["train"] & parts["test"])
        assert not parts["val"] & parts["test"]
        for a in ("train", "val", "test"):
            for b in ("train", "val", "test"):
                if a < b:  # no unit is split across parts
                    ua = set(units[list(parts[a])])
                    assert not ua & set(units[list(parts[b])])
        # the inner validation is about the split's share of the training rows
        assert 0.05 < len(parts["val"]) / (len(parts["train"]) + len(parts["val"])) < 0.2
    # the repeats deal the rows differently
    first = [set(f.splits["test"].tolist()) for f in folds[:5]]
    second = [set(f.splits["test"].tolist()) for f in folds[5:]]
    assert first != second


def test_folds_are_stratified_over_every_task():
    data, units = _data(1)
    folds = make_crossfit_folds(data, units, folds=4, repeats=1, seed=3, val_share=1 / 9)
    small = data.targets["small"].numpy()
    lab = data.labelled["small"].numpy()
    overall = np.bincount(small[lab], minlength=3) / lab.sum()
    for f in folds:
        idx = f.splits["test"].numpy()
        share = np.bincount(small[idx][lab[idx]], minlength=3) / lab[idx].sum()
        assert np.abs(share - overall).max() < 0.08


def test_more_folds_than_a_tasks_units_is_refused_in_one_line():
    data, _ = _data()
    units = np.repeat(np.arange(3), N // 3 + 1)[:N]  # three units
    with pytest.raises(DataError, match=r"final\.crossfit\.folds: 5 folds, but task big") as e:
        make_crossfit_folds(data, units, folds=5, repeats=1, seed=0, val_share=0.1)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("key", "value", "hint"),
    [
        ("folds", 1, "folds"),
        ("repeats", 0, "repeats"),
        ("margin", -0.01, "margin"),
    ],
)
def test_bad_crossfit_keys_are_refused(key: str, value: float, hint: str):
    raw = {
        "data": {"source": "x.parquet", "modalities": {"a": {"column": "a"}}},
        "tasks": [{"name": "t", "type": "binary", "column": "t"}],
        "final": {"crossfit": {key: value}},
    }
    with pytest.raises(ConfigError, match=rf"final\.crossfit\.{hint}"):
        validate_params(raw)


def test_delta_m_per_fold_uses_each_folds_own_single_task_values():
    xfit = CrossFit(
        folds=2,
        repeats=1,
        multi=[{"a": {"auroc": 0.66}}, {"a": {"auroc": 0.8}}],
        single=[{"a": {"auroc": 0.6}}, {"a": {"auroc": 0.8}}],
        rows={"a": 10},
        train_rows=5,
    )
    assert xfit.delta_m_per_fold([("a", "auroc")]) == pytest.approx([10.0, 0.0])
