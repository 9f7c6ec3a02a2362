"""Cross-fitting: every labelled row scored by models that never saw it, for the verdict
about the method (`multitune.report.crossfit`).

Folds: `multitune.final.crossfit_folds`; in fold k the procedure trains on the other folds,
carving its inner validation from them, then predicts fold k.

What is chosen where. Inside each fold: early stopping (each side on its inner validation;
the multi-task side against the single-task sides' inner validation metrics of that fold),
and the linear model's C and class weighting. Once, outside the folds, on the development
data (train + val of the split): the configs (the searches' winners and the small tasks'
cross-validated finalists) and each task's single-task side (network or linear). The report
says so; `benchmarks/calibration.py` measures what choosing outside costs.

Both sides of a fold train with the same fresh seed (`seed_base + 10_000 + fold index`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from multitune.config import Params
from multitune.final.crossfit_folds import Fold, make_crossfit_folds
from multitune.final.reference import fit_reference
from multitune.final.runs import RunJob, Trainings, run_all
from multitune.final.selection import LINEAR, SideChoice
from multitune.report.crossfit import (
    FoldDiffs,
    MethodComparison,
    compare_method,
    equivalence_margin,
)
from multitune.training import TrainingData
from multitune.training.metrics import MIN_BASELINE, delta_m, higher_is_better, primary_metric

Metrics = dict[str, float]
SEED_OFFSET = 10_000


@dataclass(frozen=True)
class CrossFit:
    """Every fold's held-out metrics of both sides.

    Attributes:
        folds: Folds per repeat.
        repeats: Repeats.
        multi: Per fold (repeat-major), the multi-task side's held-out metrics by task.
        single: Per fold, each task's single-task side's held-out metrics.
        rows: Task -> labelled rows scored (each once per repeat).
        train_rows: Mean rows a fold trains on (train + inner validation).
        runs: Trainings (networks) the cross-fit took; linear fits are not counted.
        seconds: Its wall time.
        notes: Fallbacks taken, one sentence each.
    """

    folds: int
    repeats: int
    multi: list[dict[str, Metrics]]
    single: list[dict[str, Metrics]]
    rows: dict[str, int]
    train_rows: float
    runs: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    fold_list: list[Fold] = field(default_factory=list)
    single_val: list[dict[str, Metrics]] = field(default_factory=list)

    def per_fold(self, task: str, metric: str, side: str) -> np.ndarray:
        """One metric's value per fold for one side (NaN where undefined)."""
        folds = self.multi if side == "multi" else self.single
        return np.array([f.get(task, {}).get(metric, math.nan) for f in folds], dtype=float)

    def delta_m_per_fold(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Δm (percent) per fold over `pairs`, each fold against its own single-task values;
        NaN where a value is missing or a single-task value is below `MIN_BASELINE`."""
        out = []
        for mt, st in zip(self.multi, self.single, strict=True):
            m: dict[str, Metrics] = {}
            s: dict[str, Metrics] = {}
            ok = True
            for task, metric in pairs:
                a, b = mt.get(task, {}).get(metric), st.get(task, {}).get(metric)
                if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
                    ok = False
                    break
                if abs(b) < MIN_BASELINE:
                    ok = False
                    break
                m.setdefault(task, {})[metric] = a
                s.setdefault(task, {})[metric] = b
            out.append(100.0 * delta_m(m, s) if ok and m else math.nan)
        return np.array(out, dtype=float)


def _seed(params: Params, fold: Fold) -> int:
    return params.final.seed_base + SEED_OFFSET + fold.seed_index


def crossfit(
    params: Params,
    data: TrainingData,
    units: np.ndarray,
    *,
    sides: Mapping[str, SideChoice],
    network: Mapping[str, Params],
    multi: Params,
    trainings: Trainings | None = None,
    folds_override: list[Fold] | None = None,
    on_done: Callable[[RunJob], None] | None = None,
) -> CrossFit:
    """Both sides over every fold (module doc).

    Args:
        params: The validated params (`final.crossfit`, `final.reference`, `split`).
        data: The training data.
        units: Each row's unit code.
        sides: Each task's single-task side (network or linear), chosen outside the folds.
        network: Each task's single-task network config.
        multi: The multi-task config.
        trainings: How the runs train and are recorded (default: one at a time, in memory).
        folds_override: Folds to use instead of making them (tests, the calibration).
        on_done: Called as each training finishes.
    """
    cfg = params.final
    xf = cfg.crossfit
    started = time.perf_counter()
    fr = params.split.fractions
    val_share = fr[1] / (fr[0] + fr[1]) if fr[0] + fr[1] > 0 else 0.1
    folds = folds_override or make_crossfit_folds(
        data, units, folds=xf.folds, repeats=xf.repeats, seed=xf.seed, val_share=val_share
    )
    names = data.task_names

    trainings = trainings or Trainings(threads=cfg.threads)

    def run(jobs: Sequence[RunJob]) -> Iterator[tuple[RunJob, object]]:
        return run_all(jobs, data, trainings, on_done=on_done)

    single, single_val, single_runs = _single_side(params, data, folds, sides, network, run)
    multi_jobs = [
        RunJob(("multi", i), multi, "crossfit", None, _seed(params, f), single_val[i], f.splits)
        for i, f in enumerate(folds)
    ]
    multi_metrics: list[dict[str, Metrics]] = [{} for _ in folds]
    for job, rec in run(multi_jobs):
        multi_metrics[job.key[1]] = {
            t: dict(m)
            for t, m in rec.test_metrics.items()  # type: ignore[attr-defined]
        }
    rows = {t: int(data.labelled[t].sum()) for t in names}
    train_rows = float(np.mean([len(f.splits["train"]) + len(f.splits["val"]) for f in folds]))
    return CrossFit(
        xf.folds if folds_override is None else max(f.index for f in folds) + 1,
        xf.repeats if folds_override is None else max(f.repeat for f in folds) + 1,
        multi_metrics,
        single,
        rows,
        train_rows,
        runs=single_runs + len(multi_jobs),
        seconds=time.perf_counter() - started,
        fold_list=folds,
        single_val=single_val,
    )


def _single_side(
    params: Params,
    data: TrainingData,
    folds: Sequence[Fold],
    sides: Mapping[str, SideChoice],
    network: Mapping[str, Params],
    run: Callable[[Sequence[RunJob]], Iterator[tuple[RunJob, object]]],
) -> tuple[list[dict[str, Metrics]], list[dict[str, Metrics]], int]:
    """Every fold's single-task side: each task's network, or the linear model where it is
    the side. Returns the held-out and the inner-validation metrics per fold, and the
    networks trained."""
    names = data.task_names
    single: list[dict[str, Metrics]] = [{} for _ in folds]
    single_val: list[dict[str, Metrics]] = [{} for _ in folds]
    jobs = [
        RunJob(("single", t, i), network[t], "crossfit", (t,), _seed(params, f), splits=f.splits)
        for i, f in enumerate(folds)
        for t in names
        if sides[t].side != LINEAR
    ]
    for job, rec in run(jobs):
        _, t, i = job.key
        single[i][t] = dict(rec.test_metrics.get(t, {}))  # type: ignore[attr-defined]
        single_val[i][t] = dict(rec.val_metrics.get(t, {}))  # type: ignore[attr-defined]
    linear = [t for t in names if sides[t].side == LINEAR]
    for i, f in enumerate(folds):
        if not linear:
            break
        fold_data = replace(data, splits={k: v.to(data.device) for k, v in f.splits.items()})
        ref = fit_reference(fold_data.select(linear), params.final.reference)
        for t in linear:
            single[i][t] = dict(ref.test.get(t, {}))
            single_val[i][t] = dict(ref.val.get(t, {}))
    return single, single_val, len(jobs)


def crossfit_groups(
    params: Params,
    data: TrainingData,
    xfit: CrossFit,
    groups: Sequence[tuple[str, ...]],
    multi: Params,
    trainings: Trainings | None = None,
) -> dict[tuple[str, ...], list[dict[str, Metrics]]]:
    """Each multi-task group over the cross-fit's folds (the same folds, seeds and stopping
    rule as the all-in-one side): per group, per fold, its held-out metrics by task."""
    jobs = [
        RunJob(
            ("group", g, i),
            multi,
            "crossfit",
            g,
            _seed(params, f),
            {t: xfit.single_val[i].get(t, {}) for t in g},
            f.splits,
        )
        for g in groups
        for i, f in enumerate(xfit.fold_list)
    ]
    out: dict[tuple[str, ...], list[dict[str, Metrics]]] = {
        g: [{} for _ in xfit.fold_list] for g in groups
    }
    for job, rec in run_all(jobs, data, trainings or Trainings(threads=params.final.threads)):
        _, g, i = job.key
        out[g][i] = {t: dict(m) for t, m in rec.test_metrics.items()}  # type: ignore[attr-defined]
    return out


def compose_groups(
    xfit: CrossFit,
    groups: Sequence[tuple[str, ...]],
    group_metrics: Mapping[tuple[str, ...], list[dict[str, Metrics]]],
) -> CrossFit:
    """The cross-fit of a partition: each task's held-out metrics, per fold, from its group's
    run (all in one: the multi-task side; one task: its single-task side)."""
    names = [t for g in groups for t in g]
    multi: list[dict[str, Metrics]] = []
    for i in range(len(xfit.multi)):
        fold: dict[str, Metrics] = {}
        for g in groups:
            source = (
                xfit.multi[i]
                if len(groups) == 1 and len(g) == len(names)
                else xfit.single[i]
                if len(g) == 1
                else group_metrics[g][i]
            )
            for t in g:
                fold[t] = dict(source.get(t, {}))
        multi.append(fold)
    return replace(xfit, multi=multi)


def primary_pairs(data: TrainingData) -> list[tuple[str, str, bool]]:
    """(task, primary metric, higher is better) for every task, in task order."""
    out = []
    for spec in data.tasks:
        metric = primary_metric(spec.type)
        out.append((spec.name, metric, higher_is_better(metric)))
    return out


def method_comparison(
    xfit: CrossFit,
    data: TrainingData,
    dm_pairs: Sequence[tuple[str, str]],
    *,
    margin: float,
    confidence: float,
) -> MethodComparison:
    """The verdict about the method from the cross-fit (`multitune.report.crossfit`): each
    task's primary metric (the family) and Δm over `dm_pairs` (fixed on validation)."""
    tasks = []
    for task, metric, up in primary_pairs(data):
        multi, single = xfit.per_fold(task, metric, "multi"), xfit.per_fold(task, metric, "single")
        finite = single[np.isfinite(single)]
        base = float(finite.mean()) if len(finite) else math.nan
        tasks.append(
            FoldDiffs(
                task,
                metric,
                up,
                multi,
                single,
                xfit.rows[task],
                equivalence_margin(metric, margin, base),
            )
        )
    dm = xfit.delta_m_per_fold(dm_pairs)
    labelled = int(sum(xfit.rows.values()))
    dm_row = FoldDiffs("Δm", "delta_m", True, dm, np.zeros_like(dm), labelled, 100.0 * margin)
    return compare_method(
        tasks,
        dm_row,
        folds=xfit.folds,
        repeats=xfit.repeats,
        confidence=confidence,
        notes=xfit.notes,
    )
