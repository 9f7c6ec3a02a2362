"""The verdict about the method: per-fold differences of a cross-fitted comparison, with
intervals that include the training data's variation, and four verdicts.

Estimand. The expected difference between the two procedures (multi-task vs single-task,
each with the configs the searches chose), trained on tables of the cross-fit's training
size, over training sets and training randomness (Bates, Hastie & Tibshirani 2024, "Cross-
validation: what does it estimate and how well does it do it?"). It is not a property of any
one trained model: that is what the test-split bootstrap (`multitune.report.stats`) describes.

Evidence. `repeats` x `folds` cross-fitting: in every fold both sides train on the other
folds and score the held-out fold, so each labelled row is scored once per repeat by models
that never saw it. Fold j gives a paired difference ``d_j = multi_j - single_j`` of a task's
metric (and of Δm, over the same folds).

Interval. The corrected resampled t (Nadeau & Bengio 2003, "Inference for the generalization
error", eq. 8; Bouckaert & Frank 2004, the corrected repeated k-fold test): the folds'
training sets overlap, so the plain variance of the ``d_j`` understates the variance of their
mean; the correction is ``var(d) * (1/J + n_test/n_train)`` with ``J`` the folds scored over
every repeat, ``n_test/n_train = 1/(folds - 1)``, and ``J - 1`` degrees of freedom.

Verdicts (on the task's primary metric; Δm is one test of its own):

* improves / hurts: the family-wise interval (Bonferroni over the tasks at `confidence`)
  lies wholly on one side of zero;
* equivalent: the ``2 * confidence - 1`` interval (90% at 95%) lies inside ``±margin``: two
  one-sided tests at ``1 - confidence`` (Schuirmann 1987);
* inconclusive: neither, with the rows it would take to decide at the observed variance
  (`rows_needed`).

The margin is declared before the run (`final.crossfit.margin`): in the metric's own units for
scores bounded by 1 (AUROC, F1, accuracy, R²), relative to the single-task side's mean for
errors (mae, rmse, kl), and ``100 * margin`` percent for Δm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import stats

from multitune.report.comparison import verdict

MethodVerdict = Literal["improves", "hurts", "equivalent", "inconclusive"]
NAN = float("nan")

METHOD = (
    "corrected resampled t over the cross-fit's folds (Nadeau & Bengio 2003; Bouckaert & "
    "Frank 2004): var(d) x (1/J + 1/(folds - 1)), J - 1 degrees of freedom"
)


@dataclass(frozen=True)
class FoldDiffs:
    """One metric's per-fold values of both sides, over every repeat's folds.

    Attributes:
        name: The task, or "Δm".
        metric: The metric ("delta_m" for Δm, in percent).
        higher_is_better: Whether a positive difference is an improvement.
        multi: Multi-task value per fold (J,), NaN where undefined on the fold.
        single: Single-task value per fold (J,).
        rows: Labelled rows scored (each once per repeat).
        margin: The equivalence margin in the metric's units (see the module doc).
    """

    name: str
    metric: str
    higher_is_better: bool
    multi: np.ndarray
    single: np.ndarray
    rows: int
    margin: float


@dataclass(frozen=True)
class MethodRow:
    """The verdict about the method for one task's metric (or Δm).

    Attributes:
        name, metric, higher_is_better, rows, margin: As `FoldDiffs`.
        multi_mean: Mean over folds of the multi-task side.
        single_mean: Mean over folds of the single-task side.
        delta: Mean paired difference, multi minus single (metric units).
        low, high: The corrected interval of `delta`, family-wise for the tasks' family.
        eq_low, eq_high: The equivalence interval (level ``2 * confidence - 1``).
        se: The corrected standard error of `delta`.
        folds: Folds with a finite difference (J).
        verdict: improves | hurts | equivalent | inconclusive.
        rows_needed: For an inconclusive verdict, rows it would take to decide at the observed
            variance and difference (None when decided, or not estimable).
    """

    name: str
    metric: str
    higher_is_better: bool
    rows: int
    margin: float
    multi_mean: float
    single_mean: float
    delta: float
    low: float
    high: float
    eq_low: float
    eq_high: float
    se: float
    folds: int
    verdict: MethodVerdict
    rows_needed: int | None = None


@dataclass(frozen=True)
class MethodComparison:
    """The cross-fitted comparison: one row per task (primary metric) and Δm.

    Attributes:
        rows: One per task, in task order.
        delta_m: Δm's row (percent), its own test at `confidence`.
        folds: Folds per repeat.
        repeats: Repeats.
        confidence: Two-sided level; the tasks' intervals are family-wise at it.
        family_level: The per-task level the family-wise intervals use.
        method: The procedure in one line.
        notes: Fallbacks taken, one sentence each.
    """

    rows: list[MethodRow]
    delta_m: MethodRow
    folds: int
    repeats: int
    confidence: float
    family_level: float
    method: str = METHOD
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> MethodVerdict:
        """The overall verdict: Δm's."""
        return self.delta_m.verdict


def corrected_interval(
    d: np.ndarray, test_train_ratio: float, level: float
) -> tuple[float, float, float, float, int]:
    """The corrected resampled t interval of the mean of `d` (module doc).

    Args:
        d: Per-fold differences (NaN folds are left out).
        test_train_ratio: n_test / n_train of one fold (``1 / (folds - 1)``).
        level: Two-sided level.

    Returns:
        Mean, low, high, the corrected standard error, and the folds used. NaN ends with fewer
        than two finite folds; a zero spread gives a zero-width interval.
    """
    d = np.asarray(d, dtype=float)
    d = d[np.isfinite(d)]
    j = len(d)
    if j == 0:
        return NAN, NAN, NAN, NAN, 0
    mean = float(d.mean())
    if j < 2:
        return mean, NAN, NAN, NAN, j
    se = math.sqrt(float(d.var(ddof=1)) * (1.0 / j + test_train_ratio))
    half = float(stats.t.ppf(0.5 + level / 2.0, j - 1)) * se
    return mean, mean - half, mean + half, se, j


def _verdict(
    delta: float, low: float, high: float, eq_low: float, eq_high: float, margin: float, up: bool
) -> MethodVerdict:
    decided = verdict(low, high, up)  # the test split's rule: the interval excludes zero
    if decided != "no clear difference":
        return decided
    if margin > 0 and -margin < eq_low and eq_high < margin:
        return "equivalent"
    return "inconclusive"


def rows_needed(
    rows: int, delta: float, se: float, margin: float, t_family: float, t_equiv: float
) -> int | None:
    """Rows it would take, at the observed variance and difference, for the interval to
    decide: to exclude zero (family-wise), or to fall inside ±margin, whichever takes fewer.

    The corrected standard error shrinks as ``1/sqrt(rows)`` (each fold's score averages its
    held-out rows); the degrees of freedom stay those of the folds.
    """
    if not (math.isfinite(se) and se > 0 and rows > 0):
        return None
    need: list[float] = []
    if abs(delta) > 0:
        need.append(rows * (t_family * se / abs(delta)) ** 2)
    if abs(delta) < margin:
        need.append(rows * (t_equiv * se / (margin - abs(delta))) ** 2)
    if not need:
        return None
    return max(rows, math.ceil(min(need)))


def method_row(
    f: FoldDiffs, ratio: float, level: float, eq_level: float, rows_for: bool = True
) -> MethodRow:
    """One metric's row: the corrected interval at `level`, the equivalence interval at
    `eq_level`, the verdict and, if inconclusive, the rows needed."""
    d = np.asarray(f.multi, float) - np.asarray(f.single, float)
    delta, low, high, se, j = corrected_interval(d, ratio, level)
    _, eq_low, eq_high, _, _ = corrected_interval(d, ratio, eq_level)
    word = _verdict(delta, low, high, eq_low, eq_high, f.margin, f.higher_is_better)
    needed = None
    if word == "inconclusive" and rows_for and j >= 2:
        t_fw = float(stats.t.ppf(0.5 + level / 2.0, j - 1))
        t_eq = float(stats.t.ppf(0.5 + eq_level / 2.0, j - 1))
        needed = rows_needed(f.rows, delta, se, f.margin, t_fw, t_eq)
    both = np.isfinite(f.multi) & np.isfinite(f.single)
    return MethodRow(
        name=f.name,
        metric=f.metric,
        higher_is_better=f.higher_is_better,
        rows=f.rows,
        margin=f.margin,
        multi_mean=float(np.mean(f.multi[both])) if both.any() else NAN,
        single_mean=float(np.mean(f.single[both])) if both.any() else NAN,
        delta=delta,
        low=low,
        high=high,
        eq_low=eq_low,
        eq_high=eq_high,
        se=se,
        folds=j,
        verdict=word,
        rows_needed=needed,
    )


def compare_method(
    tasks: Sequence[FoldDiffs],
    delta_m: FoldDiffs,
    *,
    folds: int,
    repeats: int,
    confidence: float = 0.95,
    notes: Sequence[str] = (),
) -> MethodComparison:
    """The cross-fitted comparison (module doc).

    Args:
        tasks: Each task's primary metric per fold: the family (Bonferroni over them).
        delta_m: Δm per fold (percent; its single side is zero).
        folds: Folds per repeat (the correction's ``n_test / n_train = 1 / (folds - 1)``).
        repeats: Repeats of the fold assignment.
        confidence: Two-sided level.
        notes: Fallbacks the cross-fit took.
    """
    if folds < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
    ratio = 1.0 / (folds - 1)
    alpha = 1.0 - confidence
    family_level = 1.0 - alpha / max(1, len(tasks))
    eq_level = 1.0 - 2.0 * alpha
    rows = [method_row(f, ratio, family_level, eq_level) for f in tasks]
    dm = method_row(delta_m, ratio, confidence, eq_level)
    return MethodComparison(rows, dm, folds, repeats, confidence, family_level, notes=list(notes))


def equivalence_margin(metric: str, margin: float, single_mean: float) -> float:
    """The margin in `metric`'s units: absolute for scores, relative to the single-task
    side's mean for errors and divergences (module doc)."""
    if metric in ("mae", "rmse", "kl", "loss"):
        return margin * abs(single_mean) if math.isfinite(single_mean) else NAN
    return margin
