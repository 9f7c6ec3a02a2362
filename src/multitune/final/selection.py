"""Each side's config, chosen on more rows than one small validation split holds.

A validation split of ~100 labelled rows cannot rank close configs: on the bundled example,
speaker's 112 validation rows prefer the model that is 0.28 macro-F1 worse on test. The rule
(DESIGN.md, "The comparison protocol"), the same for both sides, never reading the test split:

* A task is *small* when it has fewer labelled validation rows than `max_val_rows`.
* The single-task side of a small task is chosen among the baselines' best `finalists` network
  configs (ranked on validation by the search) and the tuned linear reference, on the mean
  held-out primary metric over `folds` cross-validation folds of train+val.
* When some task is small, the multi-task config is chosen among the sweep's best `finalists`
  on the same folds, by the mean held-out training objective (`multitune.training.objective`,
  against each task's chosen single-task side: its held-out metrics in the same fold for a
  small task, its validation metrics otherwise).
* Every other task's single-task side is the better, on validation, of the best baseline and
  the linear reference: the rule every search already uses (a tie goes to the linear model).

Folds. Every train+val row gets a fold; rows of one unit (a group of `split.group_column`, a
duplicate set) share it, and the folds are stratified on the labels of the small task with the
fewest labelled rows (scikit-learn's `StratifiedGroupKFold`). Fold k's run trains on the other
folds but k + 1, stops early on fold k + 1 (as the pipeline trains on train and stops on val),
and is scored on fold k: each candidate is judged on rows that chose nothing about it, its own
epoch and the reference's C included. Fallbacks, stated in `Selection.notes`: fewer units than
folds -> rows are assigned one by one; a class with fewer labelled rows than folds is absent
from some held-out folds; a fold on which a metric is undefined is left out of that
candidate's mean (a candidate with no defined fold keeps the validation choice).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold
from torch import Tensor

from multitune.config import Params
from multitune.config.final import FinalConfig
from multitune.errors import DataError
from multitune.final.reference import ReferenceResult, fit_reference
from multitune.final.runs import RunJob, Trainings, run_all
from multitune.final.scoring import SeedRun
from multitune.training import TrainingData
from multitune.training.metrics import higher_is_better, objective, primary_metric

logger = logging.getLogger(__name__)

NETWORK, LINEAR = "network", "linear"
Metrics = dict[str, float]


@dataclass(frozen=True)
class SideChoice:
    """The single-task side of one task.

    Attributes:
        task: The task.
        side: "network" (a tuned single-task network) or "linear" (the linear reference).
        network: The network config trained over seeds: the side itself, or the best network
            candidate, kept as the floor check's diagnostic when the linear model is the side.
        how: What chose it, e.g. "validation macro_f1" or "5-fold CV macro_f1".
        scores: Candidate label -> the score it was chosen on.
        fold_metrics: The chosen side's held-out metrics per fold (cross-validated tasks).
    """

    task: str
    side: str
    network: Params
    how: str
    scores: dict[str, float] = field(default_factory=dict)
    fold_metrics: list[Metrics] | None = None


@dataclass(frozen=True)
class Selection:
    """What the selection chose, and what it cost.

    Attributes:
        single: Small task -> its single-task side (other tasks choose on validation once
            their networks are trained: `multitune.final.protocol.train_sides`).
        network: Task -> the single-task network config to train over seeds.
        multi: The multi-task config to train over seeds.
        multi_how: What chose it.
        multi_scores: Multi-task candidate label -> the score it was chosen on.
        small: The small tasks (cross-validated).
        folds: Folds used (0: none).
        notes: Fallbacks taken, one sentence each.
        cv_runs: Network training runs the cross-validation took.
        cv_seconds: Wall time of the cross-validation (networks and linear fits).
    """

    single: dict[str, SideChoice]
    network: dict[str, Params]
    multi: Params
    multi_how: str
    multi_scores: dict[str, float] = field(default_factory=dict)
    small: list[str] = field(default_factory=list)
    folds: int = 0
    notes: list[str] = field(default_factory=list)
    cv_runs: int = 0
    cv_seconds: float = 0.0


@dataclass(frozen=True)
class _Runs:
    """Runs the cross-validation's jobs (`run_all`) the same way for both sides."""

    data: TrainingData
    trainings: Trainings

    def __call__(self, jobs: Sequence[RunJob]) -> Iterator[tuple[RunJob, SeedRun]]:
        return run_all(jobs, self.data, self.trainings)


def small_tasks(data: TrainingData, max_val_rows: int) -> list[str]:
    """Tasks with fewer labelled validation rows than `max_val_rows`, in task order."""
    val = data.splits["val"]
    return [t for t in data.task_names if int(data.labelled[t][val].sum()) < max_val_rows]


def make_folds(
    data: TrainingData, units: np.ndarray, stratify: str, folds: int, seed: int
) -> tuple[list[dict[str, Tensor]], list[str]]:
    """Train/val/test row indices of each fold over train+val (see the module doc).

    Args:
        data: The data (its train and val splits are divided).
        units: Each row's unit code (rows of a unit stay in one fold).
        stratify: The task whose labels the folds are stratified on.
        folds: Number of folds (>= 3).
        seed: Seed of the assignment.

    Returns:
        One ``{"train", "val", "test"}`` index dict per fold, and the fallbacks taken.
    """
    rows = torch.cat([data.splits["train"], data.splits["val"]]).cpu().numpy()
    spec = next(t for t in data.tasks if t.name == stratify)
    labelled = data.labelled[stratify].cpu().numpy()[rows]
    y = np.full(len(rows), -1, dtype=np.int64)  # unlabelled rows: a stratum of their own
    if spec.type in ("classification", "binary"):
        y[labelled] = data.targets[stratify].cpu().numpy()[rows][labelled].astype(np.int64)
    else:
        y[labelled] = 0
    if len(rows) < folds:
        raise DataError(
            f"final.selection.folds: {folds} folds, but train+val holds {len(rows)} rows; lower "
            "final.selection.folds (>= 3) or set final.selection.enabled: false"
        )
    groups = units[rows]
    notes: list[str] = []
    n_units = len(np.unique(groups))
    if n_units < folds:
        notes.append(
            f"train+val holds {n_units} unit(s), fewer than {folds} folds: rows were assigned "
            "to folds one by one"
        )
        groups = np.arange(len(rows))
    counts = np.bincount(y[y >= 0]) if (y >= 0).any() else np.zeros(0, np.int64)
    rare = [int(c) for c in np.flatnonzero((counts > 0) & (counts < folds))]
    if rare and spec.classes:
        names = ", ".join(str(spec.classes[c]) for c in rare[:5])
        notes.append(
            f"task {stratify}: {len(rare)} class(es) ({names}{', ...' if len(rare) > 5 else ''}) "
            f"have fewer labelled train+val rows than {folds} folds and are absent from some "
            "held-out folds"
        )
    fold_of = np.empty(len(rows), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the rare classes, stated above
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        for k, (_, held) in enumerate(splitter.split(rows, y, groups)):
            fold_of[held] = k
    out = []
    for k in range(folds):
        stop = (k + 1) % folds
        part = {
            "train": rows[(fold_of != k) & (fold_of != stop)],
            "val": rows[fold_of == stop],
            "test": rows[fold_of == k],
        }
        out.append({s: torch.as_tensor(np.sort(i), dtype=torch.long) for s, i in part.items()})
    return out, notes


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _best(scores: Mapping[str, float], higher: bool, prefer: str | None = None) -> str | None:
    """The label with the best finite score (ties to `prefer`, then to the first listed)."""
    finite = {k: v for k, v in scores.items() if math.isfinite(v)}
    if not finite:
        return None
    sign = 1.0 if higher else -1.0
    top = max(sign * v for v in finite.values())
    tied = [k for k, v in finite.items() if sign * v == top]
    return prefer if prefer in tied else tied[0]


def choose_on_validation(
    task: str,
    network: Params,
    network_val: Mapping[str, float],
    metric: str,
    reference: ReferenceResult | None,
) -> SideChoice:
    """A task's side chosen on validation: the best baseline or the linear reference."""
    scores = {"network": float(network_val.get(metric, math.nan))}
    if reference is not None and task in reference.val:
        scores["linear"] = float(reference.val[task].get(metric, math.nan))
    side = _best(scores, higher_is_better(metric), prefer=LINEAR) or NETWORK
    return SideChoice(task, side, network, f"validation {metric}", scores)


def select(
    params: Params,
    data: TrainingData,
    units: np.ndarray,
    *,
    singles: Mapping[str, Sequence[Params]],
    single_val: Mapping[str, Mapping[str, float]],
    multis: Sequence[Params],
    reference: ReferenceResult | None,
    trainings: Trainings | None = None,
) -> Selection:
    """Choose every task's single-task side and the multi-task config (module doc).

    Args:
        params: The validated params (`final.selection`, `final.reference`, `final.seed_base`).
        data: The training data.
        units: Each row's unit code (`multitune.data.artifacts.read_units`).
        singles: Task -> its baselines' finalists, best first (the first is the best on val).
        single_val: Task -> the best baseline's validation metrics (the search's record): the
            multi-task objective's reference for tasks that are not small (missing: the
            linear reference's validation metrics).
        multis: The sweep's finalists, best first.
        reference: The linear reference fitted on train and tuned on val (None: disabled).
        trainings: How the cross-validation's runs train and are recorded (default: one
            at a time, kept in memory).

    Returns:
        The choices, their scores and the cost.
    """
    cfg: FinalConfig = params.final
    sel = cfg.selection
    types = data.task_types
    small = small_tasks(data, sel.max_val_rows) if sel.enabled else []
    network = {t: singles[t][0] for t in data.task_names}
    choices: dict[str, SideChoice] = {}
    if not small:
        return Selection(choices, network, multis[0], "the sweep's best validation score")
    started = time.perf_counter()
    stratify = min(small, key=lambda t: int(data.labelled[t].sum()))
    folds, notes = make_folds(data, units, stratify, sel.folds, sel.seed)
    seed = cfg.seed_base
    # Every small task's network finalists, in one pool.
    jobs = [
        RunJob(("single", t, i, k), p, "cv", (t,), seed, splits=fold)
        for t in small
        for i, p in enumerate(singles[t][: sel.finalists])
        for k, fold in enumerate(folds)
    ]
    held: dict[tuple[str, int], list[Metrics]] = {}
    runs = _Runs(data, trainings or Trainings(threads=cfg.threads))
    for job, rec in runs(jobs):
        _, t, i, k = job.key
        held.setdefault((t, i), [{}] * len(folds))[k] = rec.test_metrics.get(t, {})
    for t in small:
        finalists = singles[t][: sel.finalists]
        side = _small_task_side(t, finalists, held, folds, data, reference, cfg)
        if side is None:
            metric = primary_metric(types[t])
            notes.append(f"task {t}: {metric} is undefined on every fold; chosen on validation")
            continue
        network[t], choices[t] = side.network, side
    multi, multi_how, multi_scores, multi_runs = _choose_multi(
        params, data, folds, choices, single_val, reference, multis, runs
    )
    return Selection(
        choices,
        network,
        multi,
        multi_how,
        multi_scores,
        small,
        sel.folds,
        notes,
        len(jobs) + multi_runs,
        time.perf_counter() - started,
    )


def _small_task_side(
    task: str,
    finalists: Sequence[Params],
    held: Mapping[tuple[str, int], list[Metrics]],
    folds: list[dict[str, Tensor]],
    data: TrainingData,
    reference: ReferenceResult | None,
    cfg: FinalConfig,
) -> SideChoice | None:
    """A small task's side chosen by cross-validation: its best network finalist against the
    linear reference, on their mean held-out primary metric (None: undefined on every fold).
    The choice's config is the best network finalist, whichever side wins."""
    metric = primary_metric(data.task_types[task])
    candidates = {f"network {i + 1}": held[(task, i)] for i in range(len(finalists))}
    if reference is not None and task in reference.val:
        candidates["linear"] = [
            fit_reference(replace(data, splits=f).select([task]), cfg.reference).test.get(task, {})
            for f in folds
        ]
    scores = {c: _mean([m.get(metric, math.nan) for m in ms]) for c, ms in candidates.items()}
    nets = {c: v for c, v in scores.items() if c != "linear"}
    best_net = _best(nets, higher_is_better(metric)) or "network 1"
    chosen = _best(scores, higher_is_better(metric), prefer="linear")
    if chosen is None:
        return None
    return SideChoice(
        task,
        LINEAR if chosen == "linear" else NETWORK,
        finalists[int(best_net.split()[-1]) - 1],
        f"{cfg.selection.folds}-fold CV {metric}",
        scores,
        candidates[chosen],
    )


def _choose_multi(
    params: Params,
    data: TrainingData,
    folds: list[dict[str, Tensor]],
    choices: Mapping[str, SideChoice],
    single_val: Mapping[str, Mapping[str, float]],
    reference: ReferenceResult | None,
    multis: Sequence[Params],
    runs: _Runs,
) -> tuple[Params, str, dict[str, float], int]:
    """The sweep finalist with the best mean held-out objective (module doc), and the runs
    it took."""
    cfg = params.final
    finalists = list(multis[: cfg.selection.finalists])
    if len(finalists) == 1:
        return finalists[0], "the sweep's best validation score (one finalist)", {}, 0
    types = data.task_types

    def baseline(k: int) -> dict[str, Metrics]:
        out: dict[str, Metrics] = {}
        for t in data.task_names:
            c = choices.get(t)
            if c is not None and c.fold_metrics is not None:
                out[t] = dict(c.fold_metrics[k])
            elif single_val.get(t):
                out[t] = dict(single_val[t])
            elif reference is not None and t in reference.val:
                out[t] = dict(reference.val[t])
        return out

    bases = [baseline(k) for k in range(len(folds))]
    jobs = [
        RunJob(("multi", i, k), p, "cv", None, cfg.seed_base, bases[k], splits=fold)
        for i, p in enumerate(finalists)
        for k, fold in enumerate(folds)
    ]
    per: dict[int, list[float]] = {i: [math.nan] * len(folds) for i in range(len(finalists))}
    for job, rec in runs(jobs):
        _, i, k = job.key
        per[i][k] = objective(rec.test_metrics, types, bases[k])
    scores = {f"sweep {i + 1}": _mean(v) for i, v in per.items()}
    chosen = _best(scores, True)
    if chosen is None:
        how = "the sweep's best validation score (CV objective undefined)"
        return finalists[0], how, scores, len(jobs)
    how = f"{len(folds)}-fold CV objective"
    return finalists[int(chosen.split()[-1]) - 1], how, scores, len(jobs)
