"""Both sides trained alike: one stopping objective, one batch-size rule's rows, per-task
class weighting."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from multitune.config import Params
from multitune.errors import ConfigError
from multitune.training import EpochReport, TrainingData, delta_m, train
from multitune.training.loop import labelled_train_rows
from multitune.training.metrics import MIN_BASELINE, objective
from multitune.training.setup import with_class_weighting
from multitune.tuning.trial import FAILED_SCORE, trial_score


def test_the_multitask_objective_is_delta_m_over_every_metric() -> None:
    types = {"c": "classification", "r": "regression"}
    mt = {"c": {"macro_f1": 0.6, "accuracy": 0.9}, "r": {"r2": 0.4, "mae": 1.0, "rmse": 2.0}}
    st = {"c": {"macro_f1": 0.5, "accuracy": 0.6}, "r": {"r2": 0.5, "mae": 2.0, "rmse": 2.0}}
    every = delta_m(mt, st)
    primary_only = ((0.6 - 0.5) / 0.5 + (0.4 - 0.5) / 0.5) / 2
    assert objective(mt, types, st) == pytest.approx(every)
    assert every != pytest.approx(primary_only)  # what early stopping used to maximize

    # A task without a usable metric (no validation labels, a single-task value ~0) is left
    # out, as the report leaves such pairs out; nothing left: NaN, never an improvement.
    assert objective({**mt, "r": {}}, types, st) == pytest.approx(delta_m({"c": mt["c"]}, st))
    near_zero = {**st, "r": {"r2": MIN_BASELINE / 2}}
    assert objective(mt, types, near_zero) == pytest.approx(delta_m({"c": mt["c"]}, st))
    assert np.isnan(objective({"c": {}, "r": {}}, types, st))
    assert np.isnan(objective({**mt, "c": {"macro_f1": float("nan")}}, types, st))

    # A single-task run keeps its task's primary metric.
    assert objective({"c": mt["c"]}, {"c": "classification"}) == pytest.approx(0.6)


def test_early_stopping_maximizes_the_sweeps_trial_score(
    tiny_params: Callable[..., Params], tiny_data: TrainingData
) -> None:
    params = tiny_params(train={"epochs": 3})
    types = {t.name: t.type for t in params.tasks}
    # A single-task reference (another run's validation metrics, nudged per metric).
    first = train(params, tiny_data, seed=1)
    baseline = {
        task: {m: v * (1.1 if m == "accuracy" else 0.9) for m, v in values.items()}
        for task, values in first.metrics["val"].items()
    }
    reports: list[EpochReport] = []
    result = train(params, tiny_data, baseline=baseline, callback=reports.append)
    assert reports
    for epoch in reports:
        score = trial_score(epoch.metrics, types, baseline)
        assert score != FAILED_SCORE
        assert epoch.objective == pytest.approx(score)
        assert epoch.objective == pytest.approx(delta_m(epoch.metrics, baseline))
    kept = result.history[result.best_epoch]["objective"]
    assert kept == max(r.objective for r in reports)
    assert trial_score(result.metrics["val"], types, baseline) == pytest.approx(kept)


def test_a_wrong_task_in_class_weighting_is_a_one_line_error(
    tiny_params: Callable[..., Params], tiny_data: TrainingData
) -> None:
    # Refused when the params are read, before any stage runs.
    with pytest.raises(ConfigError) as err:
        tiny_params(train={"class_weighting": {"clss": "balanced"}})
    assert str(err.value).endswith(
        "train.class_weighting: 'clss' is not a task (did you mean 'cls'?); per-task class "
        "weighting takes cls, bin"
    )
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"'reg' is a regression task.*takes cls, bin"):
        tiny_params(train={"class_weighting": {"reg": "balanced"}})
    del tiny_data


def test_class_weighting_is_per_task(tiny_data: TrainingData) -> None:
    plain = tiny_data.select(["cls", "bin"])
    weighted = with_class_weighting(plain, {"cls": "balanced"})
    configs = {t.name: t.config for t in weighted.tasks}
    assert configs["cls"].class_weights == "balanced"
    # bin sets its own pos_weight in the fixture; a task left out keeps its own setting.
    assert configs["bin"].pos_weight == "balanced"
    assert with_class_weighting(plain, "none") is plain
    assert with_class_weighting(plain, {}) is plain


def test_a_runs_rows_are_those_labelled_for_any_of_its_tasks(tiny_data: TrainingData) -> None:
    train_idx = tiny_data.splits["train"]
    for task in tiny_data.task_names:
        assert labelled_train_rows(tiny_data, [task]) == tiny_data.train_rows(task)
    anyone = torch.stack([tiny_data.labelled[t][train_idx] for t in tiny_data.task_names])
    assert labelled_train_rows(tiny_data) == int(anyone.any(0).sum())
    assert labelled_train_rows(tiny_data) > max(
        tiny_data.train_rows(t) for t in tiny_data.task_names
    )
