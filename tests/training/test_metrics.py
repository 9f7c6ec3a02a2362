"""Metrics against hand-computed values and scikit-learn; Δm; joint accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import f1_score, r2_score, roc_auc_score

from multitune.config import BinaryTask, ClassificationTask, MultilabelTask, RegressionTask
from multitune.models.heads import TaskSpec
from multitune.training.metrics import (
    MIN_BASELINE,
    auroc,
    average_ranks,
    delta_m,
    higher_is_better,
    joint_accuracy,
    objective,
    primary_metric,
    task_metrics,
)


def test_delta_m_matches_hand_computation() -> None:
    mt = {"a": {"accuracy": 0.9, "macro_f1": 0.6}, "r": {"rmse": 2.0, "r2": 0.5}}
    st = {"a": {"accuracy": 0.8, "macro_f1": 0.6}, "r": {"rmse": 2.5, "r2": 0.4}}
    # a: mean(+0.1/0.8, 0) = 0.0625 ; r: mean(-(2.0-2.5)/2.5, 0.1/0.4) = mean(0.2, 0.25) = 0.225
    assert delta_m(mt, st) == pytest.approx((0.0625 + 0.225) / 2)
    assert delta_m(st, st) == 0.0
    worse = {"a": {"accuracy": 0.4}}
    assert delta_m(worse, st) == pytest.approx(-0.5)


def test_delta_m_leaves_out_near_zero_baselines_and_says_so_when_nothing_is_left() -> None:
    mt = {"a": {"accuracy": 0.9, "f1": 0.2}, "r": {"r2": 0.1, "rmse": 1.0}}
    st = {"a": {"accuracy": 0.8, "f1": 0.0}, "r": {"r2": MIN_BASELINE / 2, "rmse": 2.0}}
    # f1 and r2 have no stable relative change: a = 0.1/0.8, r = -(1.0-2.0)/2.0
    assert delta_m(mt, st) == pytest.approx((0.125 + 0.5) / 2)
    at_threshold = {"a": {"accuracy": 0.8}, "r": {"r2": MIN_BASELINE, "rmse": 2.0}}
    assert delta_m({"r": {"r2": 2 * MIN_BASELINE}}, at_threshold) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"task 'a'.*below MIN_BASELINE"):
        delta_m({"a": {"f1": 0.5}}, {"a": {"f1": 0.0}})
    assert np.isnan(delta_m({"a": {"accuracy": 0.5}}, {"a": {"accuracy": float("nan")}}))


def test_no_delta_m_without_single_task_results() -> None:
    with pytest.raises(ValueError, match="needs single-task results"):
        delta_m({"a": {"accuracy": 0.9}}, {})
    with pytest.raises(ValueError, match="no single-task result for task 'b'"):
        delta_m({"b": {"accuracy": 0.9}}, {"a": {"accuracy": 0.8}})


def test_direction_and_primary() -> None:
    assert higher_is_better("accuracy") and not higher_is_better("rmse")
    assert not higher_is_better("kl") and primary_metric("regression") == "r2"


def test_metrics_agree_with_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    probs = rng.dirichlet(np.ones(3), 50)
    labelled = np.ones(50, bool)
    spec = TaskSpec(ClassificationTask(name="c", column="c"), ["a", "b", "c"])
    m = task_metrics(spec, probs, y, labelled)
    assert m["macro_f1"] == pytest.approx(f1_score(y, probs.argmax(1), average="macro"))
    yb, pb = rng.integers(0, 2, 50), rng.random(50)
    mb = task_metrics(TaskSpec(BinaryTask(name="b", column="b"), ["n", "y"]), pb, yb, labelled)
    assert mb["auroc"] == pytest.approx(roc_auc_score(yb, pb))
    assert mb["f1"] == pytest.approx(f1_score(yb, pb >= 0.5))
    yr, pr = rng.normal(size=50), rng.normal(size=50)
    mr = task_metrics(TaskSpec(RegressionTask(name="r", column="r")), pr, yr, labelled)
    assert mr["r2"] == pytest.approx(r2_score(yr, pr))
    assert mr["rmse"] == pytest.approx(np.sqrt(((yr - pr) ** 2).mean()))
    ym, pm = rng.integers(0, 2, (50, 4)), rng.random((50, 4))
    spec_m = TaskSpec(MultilabelTask(name="m", column="m"), list("pqrs"))
    mm = task_metrics(spec_m, pm, ym, labelled)
    assert mm["micro_f1"] == pytest.approx(f1_score(ym, pm >= 0.5, average="micro"))


def test_average_ranks_are_scipys_rankdata_ties_included() -> None:
    rng = np.random.default_rng(0)
    cases = [
        rng.integers(0, 5, 200).astype(np.float64),  # many ties
        rng.integers(0, 50, 1000).astype(np.float32),  # a float32 score, some ties
        rng.integers(-3, 3, 101),  # integers
        np.round(rng.random(500), 2),
        rng.random(300),  # no ties
        np.full(7, 0.5),  # one tie group
        np.array([0.3]),
        np.array([], dtype=np.float64),
        np.array([0.1, np.nan, 0.2]),  # NaN: all NaN, as SciPy's default
    ]
    for values in cases:
        ours = average_ranks(values)
        assert ours.dtype == np.float64
        np.testing.assert_array_equal(ours, rankdata(values))
    y = rng.integers(0, 2, 400)
    score = np.round(rng.random(400), 1).astype(np.float32)  # a tied score: AUROC's ties
    assert auroc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)


def test_only_labelled_rows_count_and_empty_is_empty() -> None:
    spec = TaskSpec(ClassificationTask(name="c", column="c"), ["a", "b"])
    probs = np.array([[0.9, 0.1], [0.9, 0.1]])
    assert task_metrics(spec, probs, np.array([0, 1]), np.array([True, False]))["accuracy"] == 1
    assert task_metrics(spec, probs, np.array([0, 1]), np.array([False, False])) == {}


def test_joint_accuracy_over_rows_labelled_for_all() -> None:
    rights = [np.array([1, 1, 0, 1], bool), np.array([1, 0, 1, 1], bool)]
    labelled = [np.array([1, 1, 1, 0], bool), np.array([1, 1, 1, 1], bool)]
    assert joint_accuracy(rights, labelled) == pytest.approx(1 / 3)
    assert joint_accuracy(rights, [np.zeros(4, bool)] * 2) is None


def test_objective_is_normalized_or_relative_to_baseline() -> None:
    metrics = {"c": {"macro_f1": 0.6}, "r": {"r2": 0.4}}
    types = {"c": "classification", "r": "regression"}
    assert objective(metrics, types) == pytest.approx(0.5)
    base = {"c": {"macro_f1": 0.5}, "r": {"r2": 0.5}}
    assert objective(metrics, types, base) == pytest.approx((0.2 - 0.2) / 2)
