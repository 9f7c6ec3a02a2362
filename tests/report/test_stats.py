"""The joint bootstrap: shared seed draws, the Δm metric set, non-finite replicates, the floor."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from multitune.config import BinaryTask
from multitune.final.scoring import SeedRun, SplitTargets, task_rows
from multitune.models.heads import TaskSpec
from multitune.report import Scored, compare, stats
from multitune.training import metrics
from multitune.training.metrics import delta_m, task_metrics


def _const(values: list[float]) -> list[stats.ScoreFn]:
    """One score fn per seed that ignores the drawn rows: only seed variance is left."""
    return [lambda idx, v=v: v for v in values]


def test_a_replicate_draws_the_same_seeds_for_every_row() -> None:
    calls: dict[tuple[int, str, str], set[int]] = defaultdict(set)
    drawn: list[np.ndarray] = []  # held so no two replicates' row sets share an id

    def spy(row: str, side: str, k: int) -> stats.ScoreFn:
        def fn(idx: np.ndarray) -> float:
            drawn.append(idx)
            calls[(id(idx), row, side)].add(k)
            return 0.5 + 0.1 * k

        return fn

    rows = [
        Scored(
            t,
            "accuracy",
            True,
            [spy(t, "m", k) for k in range(3)],
            [spy(t, "s", k) for k in range(3)],
        )
        for t in ("a", "b", "c")
    ]
    compare(rows, 50, delta_m, samples=200)
    replicates = {key[0] for key in calls} - {id(drawn[0])}  # the first call: the full split
    assert len(replicates) == 200
    for rep in replicates:
        for side in ("m", "s"):
            assert calls[(rep, "a", side)] == calls[(rep, "b", side)] == calls[(rep, "c", side)]


def test_delta_m_interval_carries_the_full_seed_variance() -> None:
    # Seed k scores the same on both tasks, so Δm of a replicate is each task's relative change:
    # its interval is the row interval over the baseline. Independent seed draws per row would
    # average two draws and narrow the Δm interval by about 1/sqrt(2).
    rng = np.random.default_rng(0)
    n = 400
    noise = rng.normal(0, 0.01, n)
    multi = [lambda idx, v=v: v + float(noise[idx].mean()) for v in (0.6, 0.7, 0.8)]
    single = _const([0.5, 0.5, 0.5])
    rows = [Scored(t, "accuracy", True, multi, single) for t in ("a", "b")]
    result = compare(rows, n, delta_m, samples=1000)
    row = result.rows[0]
    assert (row.ci_low, row.ci_high) == (result.rows[1].ci_low, result.rows[1].ci_high)
    assert result.delta_m_low == pytest.approx(row.ci_low / 0.5)
    assert result.delta_m_high == pytest.approx(row.ci_high / 0.5)
    assert result.delta_m == pytest.approx(row.delta / 0.5)


def test_near_zero_baselines_are_left_out_of_delta_m_and_listed() -> None:
    rows = [
        Scored("a", "accuracy", True, _const([0.1] * 3), _const([0.0] * 3)),
        Scored("a", "f1", True, _const([0.1] * 3), _const([5e-4] * 3)),
        Scored("b", "accuracy", True, _const([0.6] * 3), _const([0.5] * 3)),
        Scored("c", "r2", True, _const([0.004] * 3), _const([0.002] * 3)),
        Scored("g", "joint_accuracy", True, _const([0.9] * 3), _const([0.0] * 3), kind="group"),
    ]
    result = compare(rows, 10, delta_m, samples=100)
    assert result.dm_metrics == [("b", "accuracy"), ("c", "r2")]
    assert [(t, m) for t, m, _ in result.dm_excluded] == [("a", "accuracy"), ("a", "f1")]
    assert all("MIN_BASELINE" in reason for *_, reason in result.dm_excluded)
    # b: +0.2 relative, c: +1.0 relative; the point and every replicate use the same pairs.
    assert result.delta_m == pytest.approx(0.6)
    assert (result.delta_m_low, result.delta_m_high) == pytest.approx((0.6, 0.6))
    assert result.dm_nonfinite == 0 and result.verdict == "improves"


def test_a_replicate_whose_chosen_baseline_falls_near_zero_has_no_delta_m() -> None:
    # Mean baseline 0.002 enters Δm; drawing seed 0 (0.0) thrice, or twice with seed 1, drops
    # it below MIN_BASELINE: 4 draws in 27 (~15%), more than 5%, so no interval.
    rows = [Scored("r", "r2", True, _const([0.1, 0.1, 0.1]), _const([0.0, 0.002, 0.004]))]
    result = compare(rows, 10, delta_m, samples=1000)
    assert result.dm_metrics == [("r", "r2")]
    assert 100 < result.dm_nonfinite < 200
    assert np.isnan(result.delta_m_low) and result.verdict == "no clear difference"
    assert result.rows[0].nonfinite == 0 and result.rows[0].verdict == "improves"


def _auroc_like(n_test: int, n_pos: int) -> tuple[list[Scored], list[np.ndarray]]:
    """A row whose score is NaN on drawn rows that hold one class (as AUROC)."""
    y = np.zeros(n_test, bool)
    y[:n_pos] = True
    undefined: list[np.ndarray] = []

    def fn(v: float) -> stats.ScoreFn:
        def score(idx: np.ndarray) -> float:
            if y[idx].all() or not y[idx].any():
                undefined.append(idx)
                return float("nan")
            return v

        return score

    row = Scored("t", "auroc", True, [fn(0.8), fn(0.82)], [fn(0.7), fn(0.72)])
    return [row], undefined


def _distinct(arrays: list[np.ndarray]) -> int:
    return len({id(a) for a in arrays})


def test_non_finite_replicates_are_counted_and_too_many_void_the_interval() -> None:
    rows, undefined = _auroc_like(20, 1)  # one positive: ~36% of draws miss it
    result = compare(rows, 20, delta_m, samples=1000)
    (row,) = result.rows
    assert row.nonfinite == result.dm_nonfinite == _distinct(undefined) > 50
    assert np.isnan(row.ci_low) and np.isnan(row.ci_high)
    assert row.verdict == "no clear difference" and result.verdict == "no clear difference"
    assert row.delta == pytest.approx(0.81 - 0.71)  # the point estimate is still reported


def test_a_few_non_finite_replicates_are_counted_and_the_interval_kept() -> None:
    rows, undefined = _auroc_like(60, 4)  # ~1.6% of draws hold no positive
    result = compare(rows, 60, delta_m, samples=1000)
    (row,) = result.rows
    assert 0 < row.nonfinite == _distinct(undefined) <= 50
    # Seeds alone move the delta between 0.08 and 0.12; the interval is read off the rest.
    assert 0.08 - 1e-9 <= row.ci_low < row.ci_high <= 0.12 + 1e-9
    assert row.verdict == "improves" and result.verdict == "improves"


def _accuracy(n: int, p: float, seed: int, seeds: int = 3) -> list[stats.ScoreFn]:
    right = np.random.default_rng(seed).random((seeds, n)) < p
    return [lambda idx, r=r: float(r[idx].mean()) for r in right]


def test_a_network_clearly_below_the_linear_reference_is_flagged() -> None:
    n = 1000
    (ref,) = _accuracy(n, 0.8, 3, seeds=1)
    (same,) = _accuracy(n, 0.6, 4, seeds=1)
    err_single = [lambda idx, k=k: 2.0 + 0.01 * k for k in range(3)]
    rows = [
        Scored("t", "accuracy", True, _accuracy(n, 0.85, 1), _accuracy(n, 0.6, 2), reference=ref),
        Scored("u", "accuracy", True, _accuracy(n, 0.6, 5), _accuracy(n, 0.6, 6), reference=same),
        Scored("r", "mae", False, _const([1.5] * 3), err_single, reference=lambda idx: 1.0),
        Scored("v", "accuracy", True, _accuracy(n, 0.6, 7), _accuracy(n, 0.6, 8)),
    ]
    t, u, r, v = compare(rows, n, delta_m, samples=500).rows
    assert t.floor_high < 0 and t.below_floor and not t.multi_below_floor
    assert t.reference == pytest.approx(ref(np.arange(n)))
    assert u.floor_low < 0 < u.floor_high and not u.below_floor
    assert r.floor_low > 0 and r.below_floor and r.multi_below_floor
    assert np.isnan(v.reference) and np.isnan(v.floor_low) and not v.below_floor


def test_rows_with_different_seed_counts_are_refused() -> None:
    rows = [
        Scored("a", "accuracy", True, _const([0.5] * 3), _const([0.5] * 3)),
        Scored("b", "accuracy", True, _const([0.5] * 3), _const([0.5] * 2)),
    ]
    with pytest.raises(ValueError, match="'b'/'accuracy' has 3 multi-task and 2 single-task"):
        compare(rows, 10, delta_m, samples=10)


def test_final_rows_score_the_reference_with_the_same_metrics() -> None:
    rng = np.random.default_rng(0)
    n = 200
    spec = TaskSpec(BinaryTask(name="b", column="b"), ["no", "yes"])
    y = rng.integers(0, 2, n)
    labelled = rng.random(n) < 0.9
    targets = {"b": SplitTargets(spec, y, labelled)}

    def run(kind: str, seed: int, noise: float) -> SeedRun:
        pred = np.clip(y + rng.normal(0, noise, n), 0, 1)
        return SeedRun(f"{kind}{seed}", kind, seed, ("b",), {"b": pred}, [], 1, {})

    multi = [run("multi", s, 0.4) for s in range(3)]
    single = {"b": [run("single", s, 0.4) for s in range(3)]}
    ref_pred = np.clip(y + rng.normal(0, 2.0, n), 0, 1)
    rows = task_rows(targets, multi, single, reference={"b": ref_pred})
    result = compare(rows, n, delta_m, samples=200)
    expected = task_metrics(spec, ref_pred, y, labelled)
    for row in result.rows:
        assert row.reference == pytest.approx(expected[row.metric])
    assert all(r.reference is None for r in task_rows(targets, multi, single))


def test_the_report_and_the_training_library_share_the_baseline_threshold() -> None:
    assert stats.MIN_BASELINE == metrics.MIN_BASELINE == 1e-3


def test_a_gap_within_the_floor_tolerance_is_not_a_broken_baseline() -> None:
    # A network trailing the reference by 0.002 with no noise: significant, yet negligible.
    rows = [
        Scored(
            "t",
            "auroc",
            True,
            _const([0.99] * 3),
            _const([0.997] * 3),
            reference=lambda idx: 0.999,
        )
    ]
    strict = compare(rows, 50, delta_m, samples=100).rows[0]
    tolerant = compare(rows, 50, delta_m, samples=100, floor_tolerance=0.01)
    assert strict.below_floor and strict.floor_high < 0
    assert not tolerant.rows[0].below_floor and tolerant.floor_tolerance == 0.01
    # Beyond the tolerance it is flagged again, and the multi-task side the same way.
    far = compare(rows, 50, delta_m, samples=100, floor_tolerance=0.005).rows[0]
    assert not far.below_floor and far.multi_below_floor  # 0.002 within, 0.009 beyond
