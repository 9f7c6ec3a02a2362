"""Intervals that respect the data: whole clusters, Δm pairs fixed on validation, family-wise
verdicts, and a single-task side that is not the network."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from multitune.report import Comparison, Scored, compare, dm_pairs_from, task_verdicts
from multitune.report.adjust import simultaneous_intervals


def _mean_dm(
    mt: Mapping[str, Mapping[str, float]], st: Mapping[str, Mapping[str, float]]
) -> float:
    rel = [(mt[t][m] - st[t][m]) / st[t][m] for t in mt for m in mt[t]]
    return 100.0 * float(np.mean(rel))


def _accuracy(correct: np.ndarray) -> list:
    """One score fn per seed: accuracy of a (seeds, n) 0/1 matrix on the drawn rows."""
    return [lambda idx, c=row: float(c[idx].mean()) for row in correct]


def _clustered(n_clusters: int, size: int, seed: int = 0) -> tuple[Scored, np.ndarray]:
    """A row whose test rows come in clusters of `size` identical copies (one seed per side,
    so only the rows vary)."""
    rng = np.random.default_rng(seed)
    multi = np.repeat((rng.random((1, n_clusters)) < 0.75).astype(float), size, axis=1)
    single = np.repeat((rng.random((1, n_clusters)) < 0.7).astype(float), size, axis=1)
    groups = np.repeat(np.arange(n_clusters), size)
    return Scored("t", "accuracy", True, _accuracy(multi), _accuracy(single)), groups


def _width(low: float, high: float) -> float:
    return high - low


def _ci(comparison: Comparison) -> tuple[float, float]:
    return comparison.rows[0].ci_low, comparison.rows[0].ci_high


def test_duplicated_rows_give_a_wider_interval_when_their_clusters_are_resampled() -> None:
    row, groups = _clustered(60, 8)
    n = len(groups)
    naive = compare([row], n, _mean_dm, samples=300)
    grouped = compare([row], n, _mean_dm, samples=300, groups=groups)
    (r_naive,), (r_grouped,) = naive.rows, grouped.rows
    # Eight copies of each cluster: rows one by one understate the spread by about sqrt(8).
    assert _width(r_grouped.ci_low, r_grouped.ci_high) > 2 * _width(
        r_naive.ci_low, r_naive.ci_high
    )
    assert _width(grouped.delta_m_low, grouped.delta_m_high) > 2 * _width(
        naive.delta_m_low, naive.delta_m_high
    )
    assert r_grouped.delta == r_naive.delta  # the point estimate does not depend on the draw
    assert (grouped.n_groups, grouped.resample_unit) == (60, "groups")
    assert (naive.n_groups, naive.resample_unit) == (n, "rows")
    assert "60 clusters" in grouped.method


def test_one_row_per_cluster_is_the_row_bootstrap() -> None:
    row, _ = _clustered(200, 1)
    shuffled = np.random.default_rng(1).permutation(200) * 7  # any labels, one row each
    plain = compare([row], 200, _mean_dm, samples=200, seed=3)
    same = compare([row], 200, _mean_dm, samples=200, seed=3, groups=np.arange(200))
    assert _ci(same) == _ci(plain)
    relabelled = compare([row], 200, _mean_dm, samples=200, seed=3, groups=shuffled)
    assert relabelled.rows[0].ci_high - relabelled.rows[0].ci_low == pytest.approx(
        plain.rows[0].ci_high - plain.rows[0].ci_low, rel=0.3
    )


def test_groups_of_the_wrong_length_are_refused() -> None:
    row, groups = _clustered(10, 3)
    with pytest.raises(ValueError, match=r"groups has shape \(29,\), expected \(30,\)"):
        compare([row], 30, _mean_dm, samples=10, groups=groups[:-1])


def test_a_single_cluster_falls_back_to_rows_and_says_so() -> None:
    row, _ = _clustered(50, 2)
    plain = compare([row], 100, _mean_dm, samples=200)
    one = compare([row], 100, _mean_dm, samples=200, groups=np.zeros(100, int))
    assert one.resample_unit == "rows" and one.n_groups == 1
    assert "1 cluster" in one.groups_fallback and "one by one" in one.method
    assert _ci(one) == _ci(plain)
    assert np.isfinite(one.delta_m_low)


def test_delta_m_pairs_chosen_on_validation_leave_out_a_near_zero_validation_baseline() -> None:
    rng = np.random.default_rng(0)
    rows = [
        Scored(
            "a",
            "accuracy",
            True,
            _accuracy(rng.random((2, 100)) < 0.8),
            _accuracy(rng.random((2, 100)) < 0.7),
        ),
        # r2 near zero on validation, comfortably away from it on test.
        Scored("b", "r2", True, [lambda idx: 0.5] * 2, [lambda idx: 0.3] * 2),
        Scored(
            "g", "joint_accuracy", True, [lambda idx: 0.5] * 2, [lambda idx: 0.4] * 2, kind="group"
        ),
    ]
    chosen, excluded = dm_pairs_from({"a": {"accuracy": 0.7}, "b": {"r2": 2e-4}}, rows)
    assert chosen == [("a", "accuracy")]
    assert [(t, m) for t, m, _ in excluded] == [("b", "r2")]
    assert "validation" in excluded[0][2] and "MIN_BASELINE" in excluded[0][2]

    fixed = compare(rows, 100, _mean_dm, samples=100, dm_pairs=chosen)
    from_test = compare(rows, 100, _mean_dm, samples=100)
    assert fixed.dm_metrics == [("a", "accuracy")] and fixed.dm_chosen_on == "validation"
    assert from_test.dm_metrics == [("a", "accuracy"), ("b", "r2")]
    assert fixed.delta_m == pytest.approx(
        _mean_dm(
            {"a": {"accuracy": fixed.rows[0].multi_mean}},
            {"a": {"accuracy": fixed.rows[0].single_mean}},
        )
    )


def test_a_validation_pair_undefined_on_test_is_excluded_with_the_reason() -> None:
    rows = [
        Scored("a", "accuracy", True, [lambda idx: 0.8] * 2, [lambda idx: 0.7] * 2),
        Scored("b", "auroc", True, [lambda idx: float("nan")] * 2, [lambda idx: 0.6] * 2),
    ]
    pairs = [("a", "accuracy"), ("b", "auroc"), ("c", "f1")]
    result = compare(rows, 10, _mean_dm, samples=50, dm_pairs=pairs)
    assert result.dm_metrics == [("a", "accuracy")]
    reasons = {(t, m): why for t, m, why in result.dm_excluded}
    assert "multi-task test value is not finite" in reasons[("b", "auroc")]
    assert "no task row" in reasons[("c", "f1")]
    assert result.delta_m == pytest.approx(100 * 0.1 / 0.7)


def _null_comparison(k: int, tasks: int = 5, n: int = 150):
    """`tasks` rows where multi- and single-task models are the same coin: nothing differs."""
    rng = np.random.default_rng(1000 + k)
    rows = []
    for t in range(tasks):
        correct = (rng.random((2, n)) < 0.7).astype(float)
        fns = _accuracy(correct)
        rows.append(Scored(f"t{t}", "accuracy", True, fns[:1], fns[1:]))
    return compare(rows, n, lambda mt, st: 0.0, samples=200, seed=k)


def test_on_null_tables_any_false_verdict_is_rare_after_adjustment() -> None:
    runs = [_null_comparison(k) for k in range(200)]
    raw = np.mean([any(r.raw_verdict != "no clear difference" for r in c.rows) for c in runs])
    adjusted = np.mean([any(r.verdict != "no clear difference" for r in c.rows) for c in runs])
    # Five raw 95% intervals: about 1 - 0.95**5 = 23% of tables claim something somewhere.
    assert raw > 0.15
    assert adjusted <= 0.1 and adjusted < raw / 2
    words = {v.verdict for c in runs for v in task_verdicts(c).values()}
    assert words <= {"improves", "hurts", "no clear difference"}


def test_only_the_primary_rows_are_adjusted() -> None:
    rng = np.random.default_rng(2)

    def fns(p: float) -> list:
        return _accuracy((rng.random((3, 400)) < p).astype(float))

    rows = [
        Scored("a", "accuracy", True, fns(0.8), fns(0.7)),
        Scored("a", "f1", True, fns(0.8), fns(0.7)),
        Scored("b", "accuracy", True, fns(0.7), fns(0.7)),
        Scored("g", "joint_accuracy", True, fns(0.6), fns(0.6), kind="group"),
    ]
    result = compare(rows, 400, _mean_dm, samples=300)
    a, a_f1, b, g = result.rows
    assert result.family == ["a", "b", "g"] and "3 verdicts" in result.adjustment
    assert [r.in_family for r in result.rows] == [True, False, True, True]
    for r in (a, b, g):  # simultaneous intervals are wider than each raw one
        assert r.adj_low < r.ci_low and r.adj_high > r.ci_high
        assert r.adj_low < r.delta < r.adj_high
    assert (a_f1.adj_low, a_f1.adj_high) == (a_f1.ci_low, a_f1.ci_high)
    assert a_f1.verdict == a_f1.raw_verdict
    assert result.adjustment_critical > 1.96


def test_one_family_member_keeps_about_its_raw_interval() -> None:
    row, _ = _clustered(400, 1, seed=4)
    (r,) = compare([row], 400, _mean_dm, samples=1000).rows
    assert r.adj_high - r.adj_low == pytest.approx(r.ci_high - r.ci_low, rel=0.15)


def test_a_member_without_spread_or_interval_does_not_void_the_others() -> None:
    rng = np.random.default_rng(5)
    noisy = Scored(
        "noisy",
        "accuracy",
        True,
        _accuracy((rng.random((2, 300)) < 0.85).astype(float)),
        _accuracy((rng.random((2, 300)) < 0.6).astype(float)),
    )
    flat = Scored("flat", "accuracy", True, [lambda idx: 0.6] * 2, [lambda idx: 0.5] * 2)
    void = Scored("void", "auroc", True, [lambda idx: float("nan")] * 2, [lambda idx: 0.5] * 2)
    result = compare([noisy, flat, void], 300, _mean_dm, samples=300)
    n, f, v = result.rows
    assert np.isfinite([n.adj_low, n.adj_high, f.adj_low, f.adj_high]).all()
    assert n.verdict == "improves" and f.verdict == "improves"
    assert f.adj_low == pytest.approx(0.1) and f.adj_high == pytest.approx(0.1)
    assert np.isnan(v.adj_low) and v.verdict == "no clear difference"
    alone = compare([noisy], 300, _mean_dm, samples=300).rows[0]
    assert n.adj_high - n.adj_low == pytest.approx(alone.adj_high - alone.adj_low, rel=1e-9)


def _linear_chosen(p_network: float, p_linear: float = 0.8, n: int = 1000) -> Scored:
    """The tuned linear model won the single-task choice; the network is a diagnostic."""
    rng = np.random.default_rng(6)
    linear = (rng.random(n) < p_linear).astype(float)

    def lin(idx: np.ndarray) -> float:
        return float(linear[idx].mean())

    return Scored(
        "t",
        "accuracy",
        True,
        _accuracy((rng.random((3, n)) < 0.82).astype(float)),
        [lin] * 3,
        reference=lin,
        network=_accuracy((rng.random((3, n)) < p_network).astype(float)),
        single_kind="linear",
    )


def test_the_floor_diagnoses_the_network_not_the_linear_side_that_was_chosen() -> None:
    result = compare([_linear_chosen(0.6)], 1000, _mean_dm, samples=300)
    (row,) = result.rows
    assert row.single_kind == "linear" and row.single_mean == pytest.approx(row.reference)
    assert row.network_mean == pytest.approx(0.6, abs=0.03)
    assert row.below_floor and row.floor_high < 0  # the network trails the linear model
    assert not row.chosen_below_floor
    v = task_verdicts(result)["t"]
    assert v.verdict != "not trustworthy"
    assert "diagnostic: the single-task network" in v.reason
    assert "single-task linear" in v.reason


def test_without_a_network_the_single_side_is_the_network() -> None:
    row = _linear_chosen(0.6)
    plain = Scored(
        row.name, row.metric, True, row.multi, row.network or [], reference=row.reference
    )
    (r,) = compare([plain], 1000, _mean_dm, samples=300).rows
    assert r.network_values == r.single_values and r.network_mean == r.single_mean
    assert r.below_floor and r.chosen_below_floor
    assert task_verdicts(compare([plain], 1000, _mean_dm, samples=300))["t"].verdict == (
        "not trustworthy"
    )


def test_a_network_with_another_seed_count_is_refused() -> None:
    row = _linear_chosen(0.6)
    bad = Scored("t", "accuracy", True, row.multi, row.single, network=(row.network or [])[:2])
    with pytest.raises(ValueError, match="2 network seeds and 3 single-task seeds"):
        compare([bad], 1000, _mean_dm, samples=10)


def test_step_down_decides_a_task_that_the_clear_ones_no_longer_mask() -> None:
    rng = np.random.default_rng(0)
    # Four independent members with unit spread: one far from zero, one at 2.45 SEs (below a
    # single step's max-|t| factor over four, about 2.49, above the one over the three left
    # after the far one is decided, about 2.39), two at zero.
    point = np.array([8.0, 2.45, 0.0, 0.0])
    reps = point + rng.normal(size=(20_000, 4))
    raw_low, raw_high = np.quantile(reps, 0.025, axis=0), np.quantile(reps, 0.975, axis=0)
    sim = simultaneous_intervals(point, reps, raw_low, raw_high, 0.95)
    first = sim.critical
    assert 2.45 < first < 2.6
    assert sim.low[0] == pytest.approx(8.0 - first, abs=0.05)  # decided at the first step
    # The second member is judged against the three left: a smaller factor decides it.
    assert 2.45 - first < 0 < sim.low[1]
    # The undecided keep the last step's factor, smaller than the first's.
    assert sim.low[2] < 0 < sim.high[2] and sim.high[2] - 0.0 < first
