"""Calibration of the final stage's verdict about the method: the cross-fitted comparison of
`multitune.report.crossfit` against the method-level truth, over tables whose truth is known.

What is calibrated. The statistics, not the networks. The folds are the stage's: units dealt
by `multitune.data.split.assign_units` as `multitune.final.crossfit_folds.make_crossfit_folds`
deals them (per repeat r a unit order from ``np.random.default_rng([seed, r])``, `FOLDS` equal
folds stratified over every task's labels, and inside each fold's training rows an inner validation
carved with fractions ``[1 - v, v]``, ``v = 0.1 / 0.9``, from the same generator). The rows
are the stage's: per task ``FoldDiffs(task, "auroc", True, multi, single, labelled_rows,
MARGIN)``, and ``FoldDiffs("Δm", "delta_m", True, dm, 0, rows, 100 * MARGIN)`` with Δm per
fold ``100 * mean_t (multi_t - single_t) / single_t``. Every interval and verdict is
`compare_method`'s (`FOLDS` x `REPEATS`, confidence `CONFIDENCE`). The procedures compared
are cheap closed-form stand-ins (numpy only), so a thousand tables fit in minutes:

* single-task: ridge regression of +-1 labels on the features, per task on its labelled
  training rows (own intercept); lambda chosen by AUROC on the inner validation rows;
* multi-task: mean-regularized multi-task ridge (Evgeniou & Pontil 2004, "Regularized
  multi-task learning"): ``w_t = w0 + v_t``, penalty ``l0 |w0|^2 + l1 sum_t |v_t|^2``, the
  augmented-features ridge (rows of task t read ``[x, .., x (slot t), ..]``) solved in closed
  form with the ``v_t`` eliminated (`self_check` compares it with the augmented fit every
  run); ``(l0, l1)`` chosen by the mean AUROC over tasks on the inner validation rows. It
  gains when the tasks share a direction and matches single-task ridge (l0 large) when not;
* A/A: the "multi" side is the single-task procedure again, its menu split and its inner
  validation carves seeded independently (same outer folds): its truth is exactly 0.

Configs chosen outside the folds. The stage chooses its configs once, on the development data,
before cross-fitting (`multitune.final.crossfit`'s module doc); so does this benchmark: each
side's grid (`SINGLE_GRID`, per task; `MULTI_GRID`) is narrowed to a menu of its best
`MENU_SIZE` on a seeded 80/10/10 unit split of the whole table (trained on the 80, scored on
the 10), and inside each fold the inner validation picks among the menu. The held-out fold
took part in choosing the menu, and every fold shares the table's one menu: the truth below
has neither, so coverage, false positives and power here include that cost.

Generator. Rows come in units of `unit_rows` rows sharing a feature offset (`feature_share` of
each feature's unit variance) and, per task, a random effect on the labels (sd
`group_effect`), so a unit's rows are not independent and folds keep units together. ``d``
features, ``T = 3`` binary tasks, each labelled on the same number of random units (partial
labelling; the tasks overlap by chance). Label ``= 1[x . w_t + unit effect + noise > 0]``,
``|w_t| = 1``, noise sd `noise`. The configurations (`configs`):

1. null: ``w_t`` mutually orthogonal unit vectors (QR), equal label counts: nothing to
   transfer, both sides ridge on the same features (neither well specified where the other
   is not); 600 units of 4, d = 32, 600 labelled rows per task;
2. aa: the A/A arm on the null generator;
3. planted: every task reads one shared direction ``u`` (``w_t = u + 0.05 e_t``,
   renormalized): 800 labelled rows per task on d = 256, so single-task ridge is starved and
   pooling three tasks gains about 0.06 AUROC (the printout gives each instance's truth).
   Smaller gains (0.01-0.04, d <= 128) were tried: at `FOLDS` x `REPEATS` the family-wise
   corrected interval of a task is about +-0.04 to 0.05 wide there, so power stays near 50-70%;
4. grouped: the null with units of 8 rows and three times the group effect (0.6), 400 units,
   960 labelled rows per task. A stronger grouping (feature share 0.7, group effect 0.8; not
   in the run) gave 7/120 tables with a false "hurts" on Δm and task coverage 0.906: the menu
   chosen on one small validation split now and then keeps a harmful shared config, every
   fold of that table uses it, and the cross-fit, which sees the table's one menu, cannot
   see the menu's own variation. That is the cost of choosing outside the folds.

Each configuration has `instances` parameter draws (its ``w_t``); each instance's truth is
computed once and `tables` benchmark tables are drawn from it (fresh data, same ``w_t``).

Truth (method level; Bates, Hastie & Tibshirani 2024, "Cross-validation: what does it estimate
and how well does it do it?"). An instance's expected difference of the two procedures, run as
in the stage on tables of the benchmark's size. Per fresh table (same ``w_t``, fresh data):
the menus are chosen on it as above; its units are dealt into `FOLDS` folds as the stage deals
them; on each fold's training rows (``n (K - 1) / K``, inner validation carved the same way)
both sides are trained and scored on a fresh holdout of `HOLDOUT` fully labelled rows; the
table's value is the mean over its folds of multi minus single AUROC per task, and of Δm. The
truth is the mean over `truth` fresh tables, topped up (`top_up`, at most `TOP_UP` times) until
its Monte-Carlo SE (sd / sqrt(count), printed) is at most ``MARGIN / 5`` (``20 * MARGIN``
percent for Δm). The A/A truth is 0 by symmetry.

Definitions (the truth is the instance's; a claim is an "improves" or "hurts" verdict):

* false_positive_rate: over the null tables (null and grouped; A/A apart), the share with at
  least one claim (a task row or Δm) on a truth smaller than that row's margin in magnitude or
  of the opposite sign; false_positive_upper: its one-sided 95% Clopper-Pearson upper bound;
* coverage: over (table, task) of every configuration, the share whose family-wise interval
  ``[low, high]`` contains the truth (Δm's 95% interval apart: dm_coverage);
* power: over planted (table, task), the share of "improves";
* equivalence_rate: over null (table, task) with ``|truth| < MARGIN / 2``, the share of
  "equivalent";
* aa_rejection_rate: the share of A/A tables with any claim;
* wrong_sign: claims against the sign of a truth that is resolved (``|truth|`` at least twice
  its MC SE); claims against an unresolved sign or the A/A's exact 0 are counted apart
  (wrong_sign_unresolved), and are false positives anyway.

Targets: false positives <= 5% over >= 200 null tables, coverage >= 93%, power >= 80%,
equivalence >= 50%, no wrong sign, A/A <= 5%.

Run: ``python benchmarks/calibration.py`` (full: 240 null, 120 A/A and 80 planted tables and
the truths; about 8 min on 2 cores), ``--quick`` (the same code on a handful of tables, with
rough truths and no top-up; about 20 s), ``--jobs N`` (processes, default 2, one BLAS thread
each), ``--seed``, ``--json PATH`` (one object: the figures above and more, written
atomically).

Left out: the networks and their early stopping, the single-task side's choice between a
network and the linear reference, the multi-task side's stopping against the single-task
sides' validation metrics, the task grouping and the gate: the stage's own tests cover those.
This measures whether the statistics say what they claim when the procedures are simple and
the truth is known.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

import numpy as np
from scipy import sparse, stats
from threadpoolctl import threadpool_limits

from multitune.data.split import assign_units
from multitune.report.crossfit import FoldDiffs, MethodComparison, compare_method

TASKS = 3
FOLDS, REPEATS, CONFIDENCE, MARGIN = 5, 2, 0.95, 0.01
VAL_SHARE = 0.1 / 0.9  # the split's 0.8 / 0.1 / 0.1: validation's share of train + val
MENU_FRACTIONS = np.array([0.8, 0.1, 0.1])
MENU_SIZE = 3
SINGLE_GRID = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
MULTI_GRID = tuple(
    (l0, l1) for l0 in (1.0, 10.0, 100.0, 1000.0, 1e4) for l1 in (1.0, 10.0, 100.0, 1000.0, 1e4)
)
HOLDOUT = 20_000
TOP_UP = 5  # an instance's truth takes at most this many times its planned fresh tables
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
CLAIMS = ("improves", "hurts")


@dataclass(frozen=True)
class Config:
    """One generator configuration and how many tables it gets.

    Attributes:
        name: null | aa | planted | grouped.
        kind: null (nothing to transfer), aa (single vs single) or planted.
        units: Units per table.
        unit_rows: Rows per unit.
        dim: Features.
        labelled_units: Units labelled for each task (each task its own random units).
        feature_share: Share of each feature's variance a unit shares.
        group_effect: Sd of each unit's random effect on each task's label.
        noise: Sd of the label noise (the signal x . w_t has sd 1).
        perturb: Planted only: norm of each task's departure from the shared direction.
        instances: Parameter draws (w_t).
        tables: Benchmark tables per instance.
        truth: Fresh tables per instance for the truth (0: the truth is 0 by symmetry).
    """

    name: str
    kind: str
    units: int
    unit_rows: int
    dim: int
    labelled_units: int
    feature_share: float
    group_effect: float
    noise: float
    perturb: float
    instances: int
    tables: int
    truth: int


def configs(quick: bool) -> list[Config]:
    """The four configurations (module doc), full or quick."""
    full = [
        Config("null", "null", 600, 4, 32, 150, 0.5, 0.2, 0.1, 0.0, 10, 12, 20),
        Config("aa", "aa", 600, 4, 32, 150, 0.5, 0.2, 0.1, 0.0, 10, 12, 0),
        Config("planted", "planted", 600, 4, 256, 200, 0.5, 0.2, 0.1, 0.05, 8, 10, 40),
        Config("grouped", "null", 400, 8, 32, 120, 0.5, 0.6, 0.1, 0.0, 10, 12, 20),
    ]
    if not quick:
        return full
    return [
        Config(**{**c.__dict__, "instances": 2, "tables": 2, "truth": min(c.truth, 3)})
        for c in full
    ]


# ---------------------------------------------------------------- generator


@dataclass(frozen=True)
class Table:
    """Features (n, d), labels (n, T) as bool, labelled mask (n, T), unit of each row (n,)."""

    x: np.ndarray
    y: np.ndarray
    lab: np.ndarray
    unit: np.ndarray


def directions(cfg: Config, rng: np.random.Generator) -> np.ndarray:
    """One instance's w_t (T, d), unit norm."""
    q, _ = np.linalg.qr(rng.standard_normal((cfg.dim, TASKS + 1)))
    if cfg.kind != "planted":
        return q[:, :TASKS].T.copy()
    u = q[:, 0]
    w = u[None, :] + cfg.perturb * _unit_rows(rng.standard_normal((TASKS, cfg.dim)))
    return _unit_rows(w)


def _unit_rows(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def draw(
    cfg: Config, w: np.ndarray, rng: np.random.Generator, units: int, labelled: int | None
) -> Table:
    """A table of `units` units; `labelled` units labelled per task (None: every row)."""
    n = units * cfg.unit_rows
    unit = np.repeat(np.arange(units), cfg.unit_rows)
    offset = rng.standard_normal((units, cfg.dim))
    x = math.sqrt(cfg.feature_share) * offset[unit] + math.sqrt(
        1.0 - cfg.feature_share
    ) * rng.standard_normal((n, cfg.dim))
    effect = cfg.group_effect * rng.standard_normal((units, TASKS))
    y = x @ w.T + effect[unit] + cfg.noise * rng.standard_normal((n, TASKS)) > 0
    if labelled is None:
        lab = np.ones((n, TASKS), dtype=bool)
    else:
        lab_units = np.zeros((units, TASKS), dtype=bool)
        for t in range(TASKS):
            lab_units[rng.choice(units, labelled, replace=False), t] = True
        lab = lab_units[unit]
    return Table(x, y, lab, unit)


def label_counts(table: Table) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Units x (task, class) label counts and rows per unit
    (`final.crossfit_folds._label_counts`)."""
    n_units = int(table.unit.max()) + 1
    rows, cols = [], []
    for t in range(TASKS):
        idx = np.flatnonzero(table.lab[:, t])
        rows.append(table.unit[idx])
        cols.append(2 * t + table.y[idx, t].astype(np.int64))
    r, c = np.concatenate(rows), np.concatenate(cols)
    counts = sparse.csr_matrix(
        sparse.coo_matrix((np.ones(len(r)), (r, c)), shape=(n_units, 2 * TASKS))
    )
    return counts, np.bincount(table.unit, minlength=n_units).astype(float)


# ---------------------------------------------------------------- procedures


def auroc(score: np.ndarray, y: np.ndarray) -> float:
    """Rank-based AUROC (Mann-Whitney), ties at their average rank; NaN with one class."""
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return math.nan
    order = np.argsort(score, kind="stable")
    s = score[order]
    new = np.empty(len(s), dtype=bool)
    new[0] = True
    np.not_equal(s[1:], s[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], len(s))
    ranks = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[y[order]].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


@dataclass(frozen=True)
class Menu:
    """A side's configs chosen outside the folds: per task lambdas (single) or (l0, l1)."""

    kind: str  # "single" | "multi"
    single: tuple[tuple[float, ...], ...] = ()
    multi: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class TaskStats:
    """One task's centered Gram ``U diag(e) U^T`` and cross-product ``U ct`` of its labelled
    training rows: every ridge of the grids is then a few products."""

    e: np.ndarray
    u: np.ndarray
    ct: np.ndarray


def _stats(table: Table, rows: np.ndarray) -> list[TaskStats]:
    """Per task: the eigendecomposition of the centered Gram of its labelled rows among `rows`
    (each task its own intercept, unpenalized)."""
    out = []
    for t in range(TASKS):
        idx = rows[table.lab[rows, t]]
        xc = table.x[idx] - table.x[idx].mean(axis=0)
        yt = np.where(table.y[idx, t], 1.0, -1.0)
        e, u = np.linalg.eigh(xc.T @ xc)
        e = np.clip(e, 0.0, None)
        out.append(TaskStats(e, u, u.T @ (xc.T @ (yt - yt.mean()))))
    return out


def _single_fits(
    st: Sequence[TaskStats], lams: Sequence[Sequence[float]]
) -> list[list[np.ndarray]]:
    """Per task, the ridge weights ``(G + lam I)^-1 c`` for each of its lambdas."""
    return [[s.u @ (s.ct / (s.e + lam)) for lam in lams[t]] for t, s in enumerate(st)]


def _multi_fits(st: Sequence[TaskStats], grid: Sequence[tuple[float, float]]) -> list[np.ndarray]:
    """Mean-regularized multi-task ridge (module doc), each task's weights (T, d) for each
    ``(l0, l1)`` of `grid`. The augmented problem's normal equations, with each ``v_t``
    eliminated (``v_t = (G_t + l1 I)^-1 (c_t - G_t w0)``), leave for ``w0``
    ``(l0 I + sum_t l1 G_t (G_t + l1 I)^-1) w0 = sum_t l1 (G_t + l1 I)^-1 c_t``."""
    d = len(st[0].e)
    reduced: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    out = []
    for l0, l1 in grid:
        if l1 not in reduced:
            a = np.zeros((d, d))
            b = np.zeros(d)
            for s in st:
                a += (s.u * (l1 * s.e / (s.e + l1))) @ s.u.T
                b += s.u @ (l1 * s.ct / (s.e + l1))
            reduced[l1] = (a, b)
        a, b = reduced[l1]
        w0 = np.linalg.solve(a + l0 * np.eye(d), b)
        out.append(np.stack([w0 + s.u @ ((s.ct - s.e * (s.u.T @ w0)) / (s.e + l1)) for s in st]))
    return out


def _multi_fit_augmented(table: Table, rows: np.ndarray, l0: float, l1: float) -> np.ndarray:
    """The same fit by the feature-augmentation trick (rows of task t read ``[x, .., x, ..]``,
    slot 0 shared, slot t + 1 its own): the check of `_multi_fits`."""
    d = table.x.shape[1]
    blocks, targets = [], []
    for t in range(TASKS):
        idx = rows[table.lab[rows, t]]
        xc = table.x[idx] - table.x[idx].mean(axis=0)
        yt = np.where(table.y[idx, t], 1.0, -1.0)
        z = np.zeros((len(idx), d * (TASKS + 1)))
        z[:, :d] = xc / math.sqrt(l0)
        z[:, d * (t + 1) : d * (t + 2)] = xc / math.sqrt(l1)
        blocks.append(z)
        targets.append(yt - yt.mean())
    z, y = np.vstack(blocks), np.concatenate(targets)
    beta = np.linalg.solve(z.T @ z + np.eye(z.shape[1]), z.T @ y)
    w0 = beta[:d] / math.sqrt(l0)
    return np.stack([w0 + beta[d * (t + 1) : d * (t + 2)] / math.sqrt(l1) for t in range(TASKS)])


def _val_auroc(table: Table, rows: np.ndarray, t: int, w: np.ndarray) -> float:
    idx = rows[table.lab[rows, t]]
    return auroc(table.x[idx] @ w, table.y[idx, t])


def _best(values: Sequence[float]) -> int:
    v = np.where(np.isfinite(values), values, -np.inf)
    return int(np.argmax(v))


def fit_side(menu: Menu, table: Table, train: np.ndarray, val: np.ndarray) -> np.ndarray:
    """Train a side on `train`, each config of its menu, keeping the best on `val` (T, d)."""
    st = _stats(table, train)
    if menu.kind == "single":
        fits = _single_fits(st, menu.single)
        return np.stack(
            [fits[t][_best([_val_auroc(table, val, t, w) for w in fits[t]])] for t in range(TASKS)]
        )
    cands = _multi_fits(st, menu.multi)
    score = [
        float(np.nanmean([_val_auroc(table, val, t, w[t]) for t in range(TASKS)])) for w in cands
    ]
    return cands[_best(score)]


def choose_menu(kind: str, table: Table, rng: np.random.Generator) -> Menu:
    """Each side's best `MENU_SIZE` configs of its grid on a seeded 80/10/10 unit split
    (trained on the 80, scored on the 10): what the stage's searches do once, outside the
    folds, on the development data."""
    counts, size = label_counts(table)
    part = assign_units(counts, size, rng.permutation(counts.shape[0]), MENU_FRACTIONS)
    train = np.flatnonzero(part[table.unit] == 0)
    val = np.flatnonzero(part[table.unit] == 1)
    st = _stats(table, train)
    if kind == "single":
        grid = [SINGLE_GRID] * TASKS
        fits = _single_fits(st, grid)
        menu = []
        for t in range(TASKS):
            score = np.array([_val_auroc(table, val, t, w) for w in fits[t]])
            keep = np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")[:MENU_SIZE]
            menu.append(tuple(SINGLE_GRID[i] for i in sorted(keep)))
        return Menu("single", single=tuple(menu))
    score = np.array(
        [
            np.nanmean([_val_auroc(table, val, t, w[t]) for t in range(TASKS)])
            for w in _multi_fits(st, MULTI_GRID)
        ]
    )
    keep = np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")[:MENU_SIZE]
    return Menu("multi", multi=tuple(MULTI_GRID[i] for i in sorted(keep)))


def menus(cfg: Config, table: Table, seed: Sequence[int]) -> tuple[Menu, Menu]:
    """(multi side, single side) menus, each from its own seeded split of `table`."""
    single = choose_menu("single", table, np.random.default_rng([*seed, 0]))
    multi_kind = "single" if cfg.kind == "aa" else "multi"
    return choose_menu(multi_kind, table, np.random.default_rng([*seed, 1])), single


# ---------------------------------------------------------------- cross-fit and truth


def _inner(
    counts: sparse.csr_matrix, size: np.ndarray, rest: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Inner part (0 train, 1 validation) of each unit of `rest` (`make_crossfit_folds`)."""
    return assign_units(
        counts[rest], size[rest], rng.permutation(len(rest)), np.array([1 - VAL_SHARE, VAL_SHARE])
    )


def _carve(
    table: Table,
    counts: sparse.csr_matrix,
    size: np.ndarray,
    held: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The inner train and validation rows of the fold that holds out the units `held`."""
    rest = np.flatnonzero(~held)
    part = np.full(len(held), -1)
    part[rest] = _inner(counts, size, rest, rng)
    p = part[table.unit]
    return np.flatnonzero(p == 0), np.flatnonzero(p == 1)


def _scores(table: Table, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Each task's AUROC of weights `w` (T, d) on its labelled rows among `rows`."""
    score = table.x[rows] @ w.T
    lab = table.lab[rows]
    y = table.y[rows]
    return np.array([auroc(score[lab[:, t], t], y[lab[:, t], t]) for t in range(TASKS)])


def delta_m(multi: np.ndarray, single: np.ndarray) -> float:
    """Δm in percent over the tasks (LibMTL's, all AUROC: higher is better)."""
    return float(100.0 * np.mean((multi - single) / np.abs(single)))


def crossfit_table(cfg: Config, w: np.ndarray, seed: Sequence[int]) -> MethodComparison:
    """One benchmark table: drawn, menus chosen on it, cross-fitted, compared."""
    table = draw(cfg, w, np.random.default_rng([*seed, 0]), cfg.units, cfg.labelled_units)
    multi_menu, single_menu = menus(cfg, table, [*seed, 1])
    counts, size = label_counts(table)
    n_units = counts.shape[0]
    aa = cfg.kind == "aa"
    multi, single = [], []
    for r in range(REPEATS):
        rng = np.random.default_rng([*seed, 2, r])
        fold_of_unit = assign_units(
            counts, size, rng.permutation(n_units), np.full(FOLDS, 1.0 / FOLDS)
        )
        for k in range(FOLDS):
            held = fold_of_unit == k
            # The stage carves one inner validation for both sides; the A/A arm's second
            # side carves its own, from its own seed.
            s_tr, s_va = _carve(table, counts, size, held, rng)
            m_tr, m_va = s_tr, s_va
            if aa:
                aa_rng = np.random.default_rng([*seed, 3, r, k])
                m_tr, m_va = _carve(table, counts, size, held, aa_rng)
            test = np.flatnonzero(held[table.unit])
            multi.append(_scores(table, test, fit_side(multi_menu, table, m_tr, m_va)))
            single.append(_scores(table, test, fit_side(single_menu, table, s_tr, s_va)))
    m, s = np.array(multi), np.array(single)
    rows = table.lab.sum(axis=0)
    tasks = [
        FoldDiffs(f"t{t}", "auroc", True, m[:, t], s[:, t], int(rows[t]), MARGIN)
        for t in range(TASKS)
    ]
    dm = np.array([delta_m(a, b) for a, b in zip(m, s, strict=True)])
    dm_row = FoldDiffs("Δm", "delta_m", True, dm, np.zeros_like(dm), int(rows.sum()), 100 * MARGIN)
    return compare_method(tasks, dm_row, folds=FOLDS, repeats=REPEATS, confidence=CONFIDENCE)


def truth_table(cfg: Config, w: np.ndarray, seed: Sequence[int]) -> np.ndarray:
    """One fresh table's contribution to the truth: the mean over its folds' training sets of
    the holdout difference per task and of Δm, shape (T + 1,)."""
    rng = np.random.default_rng([*seed, 0])
    table = draw(cfg, w, rng, cfg.units, cfg.labelled_units)
    holdout = draw(cfg, w, rng, HOLDOUT // cfg.unit_rows, None)
    everything = np.arange(len(holdout.unit))
    multi_menu, single_menu = menus(cfg, table, [*seed, 1])
    counts, size = label_counts(table)
    n_units = counts.shape[0]
    rng_f = np.random.default_rng([*seed, 2])
    fold_of_unit = assign_units(counts, size, rng_f.permutation(n_units), np.full(FOLDS, 0.2))
    out = []
    for k in range(FOLDS):
        tr, va = _carve(table, counts, size, fold_of_unit == k, rng_f)
        m = _scores(holdout, everything, fit_side(multi_menu, table, tr, va))
        s = _scores(holdout, everything, fit_side(single_menu, table, tr, va))
        out.append(np.append(m - s, delta_m(m, s)))
    return np.mean(out, axis=0)


# ---------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    """A batch of work on one instance: benchmark tables or truth tables."""

    config: Config
    config_index: int
    instance: int
    what: str  # "tables" | "truth"
    start: int
    count: int
    seed: int

    @property
    def cost(self) -> float:
        """Rough relative cost (the longest go first)."""
        return self.count * (1.0 + (self.config.dim / 32.0) ** 2)


Row = tuple[float, float, float, str]  # delta, low, high, verdict
Result = tuple[int, int, str, list[Any], float]


def run_job(job: Job) -> Result:
    """Run one batch (in a worker): per fresh table its truth row, or per benchmark table its
    task rows and Δm row as `Row`. Plain tuples and lists only cross the process pool."""
    started = time.perf_counter()
    w = directions(job.config, np.random.default_rng([job.seed, job.config_index, job.instance]))
    base = [job.seed, job.config_index, job.instance]
    out: list[Any] = []
    with threadpool_limits(1):
        for i in range(job.start, job.start + job.count):
            if job.what == "truth":
                out.append(truth_table(job.config, w, [*base, 1, i]).tolist())
            else:
                cmp = crossfit_table(job.config, w, [*base, 0, i])
                out.append([(r.delta, r.low, r.high, r.verdict) for r in [*cmp.rows, cmp.delta_m]])
    return job.config_index, job.instance, job.what, out, time.perf_counter() - started


def _init_worker() -> None:
    for var in THREAD_VARS:
        os.environ[var] = "1"


def make_jobs(cfgs: Sequence[Config], seed: int, chunk: int) -> list[Job]:
    """Every batch: each instance's truth tables and benchmark tables, `chunk` at a time."""
    jobs = []
    for ci, cfg in enumerate(cfgs):
        for inst in range(cfg.instances):
            for what, count in (("truth", cfg.truth), ("tables", cfg.tables)):
                for start in range(0, count, chunk):
                    jobs.append(Job(cfg, ci, inst, what, start, min(chunk, count - start), seed))
    return sorted(jobs, key=lambda j: -j.cost)


def top_up(cfgs: Sequence[Config], results: Sequence[Result], seed: int, chunk: int) -> list[Job]:
    """More fresh tables for the instances whose truth's MC SE is above ``MARGIN / 5`` (tasks)
    or ``20 * MARGIN`` percent (Δm), as many as the observed spread says it takes (at most
    `TOP_UP` times the planned count in all)."""
    target = np.array([MARGIN / 5] * TASKS + [20 * MARGIN])
    jobs = []
    for (ci, inst), tr in truths(cfgs, results).items():
        cfg = cfgs[ci]
        if cfg.kind == "aa" or tr.count < 2 or np.all(tr.se <= target):
            continue
        want = math.ceil(1.2 * tr.count * float(np.max((tr.se / target) ** 2)))
        want = min(want, TOP_UP * cfg.truth)
        for start in range(tr.count, want, chunk):
            jobs.append(Job(cfg, ci, inst, "truth", start, min(chunk, want - start), seed))
    return sorted(jobs, key=lambda j: -j.cost)


def run_all(jobs: Sequence[Job], workers: int) -> list[Result]:
    """Run the batches, `workers` processes at a time (one BLAS thread each)."""
    if workers <= 1:
        return [run_job(j) for j in jobs]
    for var in THREAD_VARS:  # inherited by the spawned workers before they import numpy
        os.environ[var] = "1"
    out = []
    step = max(1, len(jobs) // 10)
    with ProcessPoolExecutor(workers, get_context("spawn"), initializer=_init_worker) as pool:
        for i, res in enumerate(pool.map(run_job, jobs, chunksize=1), 1):
            out.append(res)
            if i % step == 0 or i == len(jobs):
                print(f"  {i}/{len(jobs)} batches", file=sys.stderr, flush=True)
    return out


# ---------------------------------------------------------------- summary


def clopper_pearson_upper(k: int, n: int, level: float = 0.95) -> float:
    """One-sided upper confidence bound of a binomial rate (Clopper-Pearson)."""
    if n == 0:
        return math.nan
    return 1.0 if k >= n else float(stats.beta.ppf(level, k + 1, n - k))


def _frac(k: int, n: int) -> float:
    return k / n if n else math.nan


def _pf(ok: bool) -> str:
    return "PASS" if ok else "MISS"


@dataclass(frozen=True)
class Truth:
    """An instance's truth per task and Δm (T + 1,), its MC SE and the fresh tables."""

    mean: np.ndarray
    se: np.ndarray
    count: int


def truths(cfgs: Sequence[Config], results: Sequence[Result]) -> dict[tuple[int, int], Truth]:
    """Each instance's truth from its fresh tables (A/A: 0, exactly)."""
    rows: dict[tuple[int, int], list[list[float]]] = {}
    for ci, inst, what, out, _ in results:
        if what == "truth":
            rows.setdefault((ci, inst), []).extend(out)
    res = {}
    for ci, cfg in enumerate(cfgs):
        for inst in range(cfg.instances):
            a = np.array(rows.get((ci, inst), []), dtype=float).reshape(-1, TASKS + 1)
            if cfg.kind == "aa" or len(a) == 0:
                res[ci, inst] = Truth(np.zeros(TASKS + 1), np.zeros(TASKS + 1), 0)
                continue
            se = a.std(axis=0, ddof=1) / math.sqrt(len(a)) if len(a) > 1 else a[0] * math.nan
            res[ci, inst] = Truth(a.mean(axis=0), se, len(a))
    return res


@dataclass
class Tally:
    """Hits out of trials."""

    hits: int = 0
    trials: int = 0

    def add(self, hit: bool) -> None:
        self.hits += bool(hit)
        self.trials += 1

    @property
    def rate(self) -> float:
        return _frac(self.hits, self.trials)

    def __str__(self) -> str:
        return f"{self.hits}/{self.trials} = {self.rate:.3f}"


def summarize(
    cfgs: Sequence[Config], results: Sequence[Result], wall: float
) -> tuple[str, dict[str, Any]]:
    """The printout and the JSON object (module doc's definitions)."""
    truth = truths(cfgs, results)
    tables: dict[tuple[int, int], list[list[Row]]] = {}
    cpu = 0.0
    for ci, inst, what, out, sec in results:
        cpu += sec
        if what == "tables":
            tables.setdefault((ci, inst), []).extend(out)
    margins = [MARGIN] * TASKS + [100.0 * MARGIN]
    null_fp, aa_rej, cov, dm_cov = Tally(), Tally(), Tally(), Tally()
    power, equiv, aa_equiv = Tally(), Tally(), Tally()
    wrong = unresolved = 0
    lines = [
        f"calibration of the cross-fitted verdict about the method: {FOLDS} folds x {REPEATS} "
        f"repeats, confidence {CONFIDENCE}, margin {MARGIN} AUROC ({100 * MARGIN:g}% for Δm)",
        "",
    ]
    per_config: dict[str, Any] = {}
    for ci, cfg in enumerate(cfgs):
        words = ("improves", "hurts", "equivalent", "inconclusive")
        task_words, dm_words = dict.fromkeys(words, 0), dict.fromkeys(words, 0)
        fp, c_cov, c_dm_cov = Tally(), Tally(), Tally()
        for inst in range(cfg.instances):
            tr = truth[ci, inst]
            for tab in tables.get((ci, inst), []):
                false_pos = False
                for j, (_, low, high, word) in enumerate(tab):
                    value, se = float(tr.mean[j]), float(tr.se[j])
                    (dm_words if j == TASKS else task_words)[word] += 1
                    if word in CLAIMS:
                        sign = 1.0 if word == "improves" else -1.0
                        false_pos |= abs(value) < margins[j] or sign * value < 0
                        if sign * value < 0 and cfg.kind != "aa" and abs(value) >= 2 * se:
                            wrong += 1
                        elif sign * value <= 0:
                            unresolved += 1
                    inside = low <= value <= high
                    if j == TASKS:
                        dm_cov.add(inside)
                        c_dm_cov.add(inside)
                        continue
                    cov.add(inside)
                    c_cov.add(inside)
                    if cfg.kind == "planted":
                        power.add(word == "improves")
                    if cfg.kind != "planted" and abs(value) < MARGIN / 2:
                        (aa_equiv if cfg.kind == "aa" else equiv).add(word == "equivalent")
                fp.add(false_pos)
                if cfg.kind == "null":
                    null_fp.add(false_pos)
                elif cfg.kind == "aa":
                    aa_rej.add(any(r[3] in CLAIMS for r in tab))
        tm = np.array([truth[ci, i].mean for i in range(cfg.instances)])
        tse = np.array([truth[ci, i].se for i in range(cfg.instances)])
        lines.append(
            f"[{cfg.name}] {cfg.instances} instances x {cfg.tables} tables: {cfg.units} units "
            f"of {cfg.unit_rows} rows, d={cfg.dim}, {cfg.labelled_units * cfg.unit_rows} "
            f"labelled rows per task, feature share {cfg.feature_share}, group effect "
            f"{cfg.group_effect}, noise {cfg.noise}"
            + (f", perturbation {cfg.perturb}" if cfg.kind == "planted" else "")
        )
        if cfg.kind == "aa":
            lines.append("  truth: 0 (exact, by symmetry)")
        else:
            worst = float(np.nanmax(tse[:, :TASKS]))
            fresh = [truth[ci, i].count for i in range(cfg.instances)]
            lines += [
                f"  truth per task (AUROC): mean {tm[:, :TASKS].mean():+.4f}, instances' range "
                f"[{tm[:, :TASKS].min():+.4f}, {tm[:, :TASKS].max():+.4f}]; MC SE at most "
                f"{worst:.4f} ({min(fresh)}-{max(fresh)} fresh tables x {FOLDS} training sets "
                f"per instance; "
                f"target <= {MARGIN / 5:.4f}: {_pf(worst <= MARGIN / 5)})",
                f"  truth Δm (%): mean {tm[:, TASKS].mean():+.3f}, range "
                f"[{tm[:, TASKS].min():+.3f}, {tm[:, TASKS].max():+.3f}]; MC SE at most "
                f"{float(np.nanmax(tse[:, TASKS])):.3f}",
            ]
        lines += [
            "  verdicts, tasks: " + ", ".join(f"{k} {v}" for k, v in task_words.items()),
            "  verdicts, Δm:    " + ", ".join(f"{k} {v}" for k, v in dm_words.items()),
            f"  tables with a false positive {fp}; task coverage {c_cov}; Δm coverage {c_dm_cov}",
            "",
        ]
        per_config[cfg.name] = {
            "tables": fp.trials,
            "false_positive_tables": fp.hits,
            "coverage": c_cov.rate,
            "dm_coverage": c_dm_cov.rate,
            "task_verdicts": task_words,
            "dm_verdicts": dm_words,
            "truth_task_mean": float(tm[:, :TASKS].mean()),
            "truth_dm_mean": float(tm[:, TASKS].mean()),
            "truth_max_se": None if cfg.kind == "aa" else float(np.nanmax(tse[:, :TASKS])),
            "setting": {k: v for k, v in cfg.__dict__.items() if k != "name"},
        }

    out: dict[str, Any] = {
        "false_positive_rate": null_fp.rate,
        "false_positive_upper": clopper_pearson_upper(null_fp.hits, null_fp.trials),
        "null_tables": null_fp.trials,
        "coverage": cov.rate,
        "power": power.rate,
        "equivalence_rate": equiv.rate,
        "aa_rejection_rate": aa_rej.rate,
        "wrong_sign": wrong,
        "wrong_sign_unresolved": unresolved,
        "dm_coverage": dm_cov.rate,
        "aa_tables": aa_rej.trials,
        "aa_equivalence_rate": aa_equiv.rate,
        "planted_pairs": power.trials,
        "equivalence_pairs": equiv.trials,
        "configs": per_config,
        "folds": FOLDS,
        "repeats": REPEATS,
        "margin": MARGIN,
        "confidence": CONFIDENCE,
        "wall_seconds": wall,
        "worker_seconds": cpu,
    }
    lines += [
        "figures",
        f"  false positives  {null_fp} null tables (null + grouped), one-sided 95% upper "
        f"bound {out['false_positive_upper']:.3f}; target <= 0.05 over >= 200 tables: "
        f"{_pf(null_fp.rate <= 0.05 and null_fp.trials >= 200)}",
        f"  coverage         {cov} (table, task), family-wise intervals, every config; "
        f"target >= 0.93: {_pf(cov.rate >= 0.93)}",
        f"  Δm coverage      {dm_cov} (95% intervals)",
        f"  power            {power} planted (table, task) 'improves'; target >= 0.80: "
        f"{_pf(power.rate >= 0.8)}",
        f"  equivalence      {equiv} null (table, task) with |truth| < {MARGIN / 2:g}; target "
        f">= 0.50: {_pf(equiv.rate >= 0.5)}",
        f"  A/A rejections   {aa_rej} tables; target <= 0.05: {_pf(aa_rej.rate <= 0.05)} "
        f"(A/A equivalence {aa_equiv})",
        f"  wrong sign       {wrong} (claims against an unresolved sign or a zero truth: "
        f"{unresolved}); target 0: {_pf(wrong == 0)}",
        "",
        f"wall {wall:.0f} s ({cpu:.0f} s in workers)",
    ]
    return "\n".join(lines), out


def write_json(path: str, obj: dict[str, Any]) -> None:
    """Write `obj` to `path` atomically (a temporary file beside it, then os.replace)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".calibration-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would outlive the rename
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def self_check() -> None:
    """The closed forms against their definitions, on a small table: `_multi_fits` against the
    augmented-features fit, `auroc` against all pairs (ties counted half).

    Raises:
        AssertionError: a closed form is wrong.
    """
    cfg = configs(True)[0]
    rng = np.random.default_rng(12345)
    table = draw(cfg, directions(cfg, rng), rng, 120, 60)
    rows = np.arange(len(table.unit))
    grid = [(1.0, 1.0), (10.0, 1000.0), (1e4, 3.0)]
    for (l0, l1), fit in zip(grid, _multi_fits(_stats(table, rows), grid), strict=True):
        assert np.allclose(fit, _multi_fit_augmented(table, rows, l0, l1), atol=1e-8)
    score = np.round(rng.standard_normal(300), 1)
    y = rng.random(300) < 0.4
    pairs = score[y][:, None] - score[~y][None, :]
    assert math.isclose(auroc(score, y), float(np.mean((pairs > 0) + 0.5 * (pairs == 0))))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Calibration of the final stage's cross-fitted verdict about the method."
    )
    parser.add_argument("--quick", action="store_true", help="a handful of tables (< 1 min)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything (default 0)")
    parser.add_argument("--json", metavar="PATH", help="write the figures as one JSON object")
    args = parser.parse_args(argv)
    self_check()
    cfgs = configs(args.quick)
    started = time.perf_counter()
    chunk = 2 if args.quick else 5
    results = run_all(make_jobs(cfgs, args.seed, chunk), args.jobs)
    more = [] if args.quick else top_up(cfgs, results, args.seed, chunk)
    if more:
        print(f"  topping up {len(more)} truth batches", file=sys.stderr, flush=True)
        results += run_all(more, args.jobs)
    text, out = summarize(cfgs, results, time.perf_counter() - started)
    out["seed"] = args.seed
    out["quick"] = args.quick
    print(text)
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
