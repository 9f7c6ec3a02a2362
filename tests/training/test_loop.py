"""The trainer end to end on tiny data: metrics, history, save/load, predict, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from multitune.errors import UserError
from multitune.training import TrainResult, load_model, predict, train
from multitune.training.command import train_command

METRICS = {
    "cls": {"accuracy", "macro_f1"},
    "bin": {"accuracy", "f1", "auroc"},
    "ml": {"micro_f1", "macro_f1"},
    "reg": {"mae", "rmse", "r2"},
    "dist": {"mode_accuracy", "kl"},
}


@pytest.fixture(scope="module")
def result(tiny_data, tiny_params) -> TrainResult:
    return train(tiny_params(task_groups={"g": ["cls", "dist"]}), tiny_data)


def test_metrics_for_every_task_and_split(result: TrainResult) -> None:
    assert set(result.metrics) == {"train", "val", "test"}
    for split in result.metrics.values():
        assert {t: set(m) for t, m in split.items()} == METRICS
        assert all(np.isfinite(v) for m in split.values() for v in m.values())
    assert set(result.group_metrics["test"]["g"]) == {"joint_accuracy"}


def test_history_and_best_epoch(result: TrainResult) -> None:
    assert result.epochs_run == len(result.history) == 3
    assert 0 <= result.best_epoch < 3
    assert set(result.history[0]) >= {"epoch", "val", "train_loss", "objective"}


def test_save_load_predict_round_trip(result: TrainResult, tiny_data, tmp_path: Path) -> None:
    feats = {m: f[:7] for m, f in tiny_data.features.items()}
    before = predict(result.model, feats)
    loaded = load_model(result.save(tmp_path / "m"))
    after = predict(loaded, {m: f.numpy() for m, f in feats.items()})
    for task, p in before.items():
        np.testing.assert_allclose(after[task], p, rtol=1e-6)
    assert before["cls"].shape == (7, 3) and before["bin"].shape == (7,)
    np.testing.assert_allclose(before["cls"].sum(1), 1.0, rtol=1e-5)
    assert abs(float(before["reg"].mean()) - 10.0) < 5.0  # original units, not standardized


def test_same_seed_same_metrics(tiny_data, tiny_params) -> None:
    params = tiny_params(train={"epochs": 2})
    a, b = train(params, tiny_data), train(params, tiny_data)
    assert a.metrics == b.metrics
    c = train(params, tiny_data, seed=1)
    assert c.metrics != a.metrics


def test_single_task_subset(tiny_data, tiny_params) -> None:
    r = train(tiny_params(train={"epochs": 1}), tiny_data, tasks=["reg"])
    assert set(r.metrics["test"]) == {"reg"}
    with pytest.raises(ValueError, match="unknown task"):
        train(tiny_params(), tiny_data, tasks=["nope"])


def test_train_command_without_data_names_dvc(tiny_params, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="dvc repro embed"):
        train_command(tiny_params(), tmp_path / "out", data_dir=tmp_path / "data")
