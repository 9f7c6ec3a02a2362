"""Per-task and overall verdicts: what a reader of the report is told to conclude."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pytest

from multitune.report import Comparison, Scored, compare, overall_verdict, task_verdicts
from multitune.report.verdicts import fmt

N = 2000


def _mean_dm(
    mt: Mapping[str, Mapping[str, float]], st: Mapping[str, Mapping[str, float]]
) -> float:
    rel = [(mt[t][m] - st[t][m]) / st[t][m] for t in mt for m in mt[t]]
    return 100.0 * float(np.mean(rel))


def _fns(p: float, rng: np.random.Generator, seeds: int = 3) -> list:
    """Accuracy score fns of `seeds` models that are right with probability `p`."""
    correct = (rng.random((seeds, N)) < p).astype(float)
    return [lambda idx, c=row: float(c[idx].mean()) for row in correct]


def _row(
    name: str,
    p_multi: float,
    p_single: float,
    *,
    p_linear: float | None = None,
    metric: str = "accuracy",
    kind: Literal["task", "group"] = "task",
    seed: int = 0,
) -> Scored:
    rng = np.random.default_rng(seed)
    reference = None if p_linear is None else _fns(p_linear, rng, seeds=1)[0]
    return Scored(
        name,
        metric,
        True,
        _fns(p_multi, rng),
        _fns(p_single, rng),
        kind=kind,
        reference=reference,
    )


def _compare(*rows: Scored) -> Comparison:
    return compare(list(rows), N, _mean_dm, samples=300)


@pytest.mark.parametrize(
    ("p_multi", "p_single", "expected"),
    [(0.8, 0.6, "improves"), (0.6, 0.8, "hurts"), (0.7, 0.7, "no clear difference")],
)
def test_task_verdict_is_read_off_the_primary_interval(
    p_multi: float, p_single: float, expected: str
):
    comparison = _compare(_row("speaker", p_multi, p_single, p_linear=0.5))
    v = task_verdicts(comparison)["speaker"]
    assert (v.verdict, v.kind, v.metric) == (expected, "task", "accuracy")
    row = comparison.rows[0]
    assert v.row is row
    assert f"multi-task {row.multi_mean:.3f} vs single-task {row.single_mean:.3f}" in v.reason
    assert f"95% CI [{row.ci_low:+.3f}, {row.ci_high:+.3f}]" in v.reason
    word, text = overall_verdict(comparison, task_verdicts(comparison))
    assert word == comparison.verdict
    assert f"Δm = {comparison.delta_m:+.2f}%" in text


def test_single_task_below_the_linear_model_is_not_trustworthy_and_named_overall():
    comparison = _compare(
        _row("speaker", 0.8, 0.6, p_linear=0.9),  # multi beats a broken single-task network
        _row("debate", 0.75, 0.7, p_linear=0.5, seed=1),
    )
    verdicts = task_verdicts(comparison)
    speaker = verdicts["speaker"]
    assert speaker.row.below_floor and speaker.row.verdict == "improves"
    assert speaker.verdict == "not trustworthy"
    assert "weaker than a linear model" in speaker.reason
    assert "this verdict is not trustworthy" in speaker.reason
    assert f"({speaker.row.reference:.3f}; single - linear 95% CI" in speaker.reason
    assert verdicts["debate"].verdict == "improves"

    assert comparison.verdict == "improves"  # Δm alone would credit multi-task learning
    word, text = overall_verdict(comparison, verdicts)
    assert word == "not trustworthy"
    assert "single-task network of speaker is weaker than a linear model" in text
    assert "debate" not in text


def test_below_the_floor_on_a_secondary_metric_does_not_overrule_the_primary():
    comparison = _compare(
        _row("speaker", 0.8, 0.6, p_linear=0.5),
        _row("speaker", 0.8, 0.6, p_linear=0.95, metric="recall", seed=2),
    )
    assert comparison.rows[1].below_floor
    v = task_verdicts(comparison)["speaker"]
    assert (v.metric, v.verdict) == ("accuracy", "improves")


def test_groups_get_a_verdict_in_row_order():
    comparison = _compare(
        _row("speaker", 0.7, 0.7),
        _row("debate", 0.7, 0.7, seed=1),
        _row("labels", 0.6, 0.8, kind="group", seed=2),
    )
    verdicts = task_verdicts(comparison)
    assert list(verdicts) == ["speaker", "debate", "labels"]
    assert (verdicts["labels"].kind, verdicts["labels"].verdict) == ("group", "hurts")
    word, text = overall_verdict(comparison, verdicts)
    assert word == "no clear difference" and "includes zero" in text


def test_delta_m_without_a_usable_baseline_says_so():
    # A single-task value of zero cannot anchor a relative change: nothing enters Δm.
    comparison = _compare(_row("speaker", 0.2, 0.0))
    word, text = overall_verdict(comparison, task_verdicts(comparison))
    assert word == "no clear difference"
    assert "Δm could not be computed" in text


def test_a_gain_that_only_the_raw_interval_shows_is_not_claimed():
    # One small gain among five tasks: its raw interval excludes zero, the family-wise one
    # (which holds for all five together) does not, and the reason says both.
    others = [_row(f"x{k}", 0.7, 0.7, seed=100 + k) for k in range(4)]
    comparison = _compare(_row("speaker", 0.73, 0.7, seed=6), *others)
    row = comparison.rows[0]
    assert (row.raw_verdict, row.verdict) == ("improves", "no clear difference")
    assert row.adj_low < 0 < row.ci_low
    v = task_verdicts(comparison)["speaker"]
    assert v.verdict == "no clear difference"
    adjusted = f"family-wise 95% CI [{fmt(row.adj_low, True)}, {fmt(row.adj_high, True)}]"
    assert f"{adjusted} over 5 verdicts" in v.reason
    assert "the raw interval alone would read 'improves'" in v.reason
