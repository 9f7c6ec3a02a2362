"""Choosing each side on more rows than one small validation split holds: the folds, the
fallbacks, and a selection that never reads the test split."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from multitune.config import Params, validate_params
from multitune.config.final import ReferenceConfig
from multitune.errors import DataError
from multitune.final.reference import fit_reference
from multitune.final.selection import (
    LINEAR,
    NETWORK,
    choose_on_validation,
    make_folds,
    select,
    small_tasks,
)
from multitune.models.heads import TaskSpec
from multitune.training import TrainingData

N = 360


def _params(**final: object) -> Params:
    return validate_params(
        {
            "data": {
                "source": "x.parquet",
                "modalities": {"a": {"column": "a", "encoder": {"name": "precomputed"}}},
            },
            "tasks": [
                {"name": "big", "type": "binary", "column": "big"},
                {"name": "small", "type": "classification", "column": "small"},
            ],
            "model": {"encoder": {"hidden": 8, "dropout": 0.0}, "sharing": {"hidden": [8]}},
            "train": {"epochs": 4, "epoch_steps": 4, "batch_size": 32, "device": "cpu"},
            "final": {"seeds": 1, "workers": 1, "selection": {"folds": 3, **final}},
        }
    )


def _data(seed: int = 0, rare: bool = False) -> tuple[TrainingData, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, 6)).astype(np.float32)
    big = np.where(x[:, 0] > 0, "y", "n").astype(object)
    small = np.array(["a", "b", "c"], dtype=object)[np.digitize(x[:, 1], [-0.4, 0.4])]
    if rare:  # class "d": two labelled rows in all of train+val
        small[[1, 2]] = "d"
    small[::3] = None  # a third unlabelled
    split = np.array(["train"] * 240 + ["val"] * 60 + ["test"] * 60, dtype=object)
    params = _params()
    data = TrainingData.from_arrays(
        {"a": x}, [TaskSpec(t, None) for t in params.tasks], {"big": big, "small": small}, split
    )
    units = np.arange(N) // 4  # rows come in groups of four
    return data, units


def test_folds_keep_units_together_cover_train_and_val_and_never_touch_test() -> None:
    data, units = _data()
    folds, notes = make_folds(data, units, "small", 3, seed=0)
    assert notes == []
    test = set(data.splits["test"].tolist())
    trainval = set(data.splits["train"].tolist()) | set(data.splits["val"].tolist())
    held = [set(f["test"].tolist()) for f in folds]
    assert set().union(*held) == trainval and sum(map(len, held)) == len(trainval)
    for f in folds:
        parts = [set(f[s].tolist()) for s in ("train", "val", "test")]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert set().union(*parts) == trainval and not (set().union(*parts) & test)
        for s in ("train", "val", "test"):  # no unit split across parts
            own = set(units[f[s].numpy()])
            others = set(
                units[np.concatenate([f[o].numpy() for o in ("train", "val", "test") if o != s])]
            )
            assert not own & others


def test_one_unit_or_rare_classes_fall_back_with_a_stated_note() -> None:
    data, _ = _data()
    folds, notes = make_folds(data, np.zeros(N, dtype=np.int64), "small", 3, seed=0)
    assert len(folds) == 3 and all(len(f["test"]) for f in folds)
    assert any("fewer than 3 folds" in n for n in notes)
    data, _ = _data(rare=True)
    folds, notes = make_folds(data, np.arange(N), "small", 3, seed=0)
    assert len(folds) == 3
    assert any("(d) have fewer labelled train+val rows than 3 folds" in n for n in notes)


def test_more_folds_than_rows_is_refused_naming_the_key() -> None:
    data, _ = _data()
    with pytest.raises(DataError, match=r"final\.selection\.folds: 1000 folds, but train\+val"):
        make_folds(data, np.arange(N), "small", 1000, seed=0)


def test_small_tasks_are_those_with_few_labelled_val_rows() -> None:
    data, _ = _data()
    assert small_tasks(data, 50) == ["small"]  # 40 labelled val rows against 60
    assert small_tasks(data, 0) == []


def test_on_validation_a_tie_goes_to_the_linear_model() -> None:
    data, _ = _data()
    ref = fit_reference(data, ReferenceConfig())
    value = ref.val["small"]["macro_f1"]
    choice = choose_on_validation("small", _params(), {"macro_f1": value}, "macro_f1", ref)
    assert choice.side == LINEAR
    better = choose_on_validation("small", _params(), {"macro_f1": value + 0.1}, "macro_f1", ref)
    assert better.side == NETWORK


def test_small_task_choice_uses_cross_validation_and_never_the_test_split() -> None:
    data, units = _data()
    params = _params(max_val_rows=50)
    raw = params.model_dump(mode="json")
    raw["model"]["sharing"]["hidden"] = [16, 8]
    deeper = validate_params(raw)

    def run(d: TrainingData) -> object:
        return select(
            params,
            d,
            units,
            singles={"big": [params], "small": [params, deeper]},
            single_val={"big": {"auroc": 0.9}, "small": {"macro_f1": 0.5}},
            multis=[params, deeper],
            reference=fit_reference(d, params.final.reference),
        )

    sel = run(data)
    assert sel.small == ["small"] and sel.folds == 3
    choice = sel.single["small"]
    assert choice.how == "3-fold CV macro_f1"
    assert set(choice.scores) == {"network 1", "network 2", "linear"}
    assert all(np.isfinite(v) for v in choice.scores.values())
    assert choice.fold_metrics is not None and len(choice.fold_metrics) == 3
    assert sel.multi_how == "3-fold CV objective" and len(sel.multi_scores) == 2
    assert sel.cv_runs == 2 * 3 + 2 * 3
    assert "big" not in sel.single  # not small: it chooses on validation once trained
    assert sel.network["small"] in (params, deeper) and sel.network["big"] is params
    # Scrambled test labels change nothing the selection reports.
    test = data.splits["test"]
    scrambled = dict(data.targets)
    scrambled["small"] = scrambled["small"].clone()
    scrambled["small"][test] = torch.flip(scrambled["small"][test], [0])
    again = run(replace(data, targets=scrambled))
    assert again.single["small"].scores == pytest.approx(choice.scores)
    assert again.multi_scores == pytest.approx(sel.multi_scores)
