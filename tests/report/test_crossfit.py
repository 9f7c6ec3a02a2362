"""The verdict about the method: the corrected resampled t interval, the four verdicts and
the rows an inconclusive verdict would need."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from multitune.report.crossfit import (
    FoldDiffs,
    compare_method,
    corrected_interval,
    equivalence_margin,
)


def _diffs(name: str, d: np.ndarray, *, up: bool = True, margin: float = 0.01) -> FoldDiffs:
    single = np.full(len(d), 0.7)
    return FoldDiffs(name, "auroc", up, single + d, single, 1000, margin)


def test_the_interval_is_nadeau_and_bengios_corrected_t():
    d = np.array([0.02, 0.05, -0.01, 0.03, 0.04, 0.00, 0.06, 0.01, 0.02, 0.03])
    mean, low, high, se, j = corrected_interval(d, 1 / 4, 0.95)
    expected_se = math.sqrt(d.var(ddof=1) * (1 / 10 + 1 / 4))
    t = stats.t.ppf(0.975, 9)
    assert j == 10
    assert mean == pytest.approx(d.mean())
    assert se == pytest.approx(expected_se)
    assert (low, high) == pytest.approx((d.mean() - t * expected_se, d.mean() + t * expected_se))
    # The correction widens the naive interval: the folds' training sets overlap.
    naive = t * d.std(ddof=1) / math.sqrt(10)
    assert high - mean > 1.8 * naive


def test_undefined_folds_are_left_out_and_one_fold_gives_no_interval():
    _, low, high, _, j = corrected_interval(np.array([0.1, np.nan, 0.2]), 0.25, 0.95)
    assert j == 2 and math.isfinite(low) and math.isfinite(high)
    mean, low, _, _, j = corrected_interval(np.array([np.nan, 0.3]), 0.25, 0.95)
    assert j == 1 and mean == pytest.approx(0.3) and math.isnan(low)


def _verdicts(*tasks: FoldDiffs) -> dict[str, str]:
    dm = FoldDiffs("Δm", "delta_m", True, np.zeros(10), np.zeros(10), 1000, 1.0)
    m = compare_method(list(tasks), dm, folds=5, repeats=2)
    return {r.name: r.verdict for r in m.rows}


def test_four_verdicts_read_off_the_intervals_and_the_margin():
    rng = np.random.default_rng(0)
    got = _verdicts(
        _diffs("gains", 0.05 + 0.005 * rng.standard_normal(10)),
        _diffs("loses", -0.05 + 0.005 * rng.standard_normal(10)),
        _diffs("same", 0.0005 * rng.standard_normal(10)),
        _diffs("noisy", 0.05 * rng.standard_normal(10)),
    )
    assert got == {
        "gains": "improves",
        "loses": "hurts",
        "same": "equivalent",
        "noisy": "inconclusive",
    }


def test_an_error_metric_improves_when_it_falls():
    rng = np.random.default_rng(1)
    lower = _diffs("err", -0.05 + 0.005 * rng.standard_normal(10), up=False)
    assert _verdicts(lower) == {"err": "improves"}


def test_a_zero_margin_never_says_equivalent():
    d = 0.0005 * np.random.default_rng(3).standard_normal(10)
    assert _verdicts(_diffs("same", d, margin=0.0)) == {"same": "inconclusive"}
    assert _verdicts(_diffs("same", d, margin=0.01)) == {"same": "equivalent"}


def test_intervals_are_family_wise_over_the_tasks():
    d = np.linspace(-0.01, 0.03, 10)
    one = compare_method([_diffs("a", d)], _diffs("Δm", d), folds=5, repeats=2, confidence=0.95)
    five = compare_method(
        [_diffs(n, d) for n in "abcde"], _diffs("Δm", d), folds=5, repeats=2, confidence=0.95
    )
    assert five.family_level == pytest.approx(0.99)
    assert five.rows[0].high - five.rows[0].low > one.rows[0].high - one.rows[0].low
    # Δm is one test: its interval does not widen with the family.
    assert five.delta_m.high == pytest.approx(one.delta_m.high)


def test_rows_needed_would_decide_at_the_observed_variance():
    rng = np.random.default_rng(2)
    d = 0.004 + 0.01 * rng.standard_normal(10)
    dm = FoldDiffs("Δm", "delta_m", True, np.zeros(10), np.zeros(10), 1000, 1.0)
    row = compare_method([_diffs("t", d)], dm, folds=5, repeats=2).rows[0]
    assert row.verdict == "inconclusive"
    assert row.rows_needed is not None and row.rows_needed > row.rows
    # Scaling each fold's noise as 1/sqrt(rows) to that many rows decides the verdict.
    shrink = math.sqrt(row.rows / row.rows_needed) * 0.999
    scaled = row.delta + (d - d.mean()) * shrink
    decided = compare_method([_diffs("t", scaled)], dm, folds=5, repeats=2).rows[0]
    assert decided.verdict != "inconclusive"


def test_the_margin_of_an_error_metric_is_relative():
    assert equivalence_margin("rmse", 0.01, 20.0) == pytest.approx(0.2)
    assert equivalence_margin("auroc", 0.01, 0.8) == pytest.approx(0.01)
