"""Test-split predictions of the final runs -> the report's `Scored` rows.

Every score is computed by the training library's metric functions
(`multitune.training.metrics.task_metrics`, `correct`, `joint_accuracy`) on the rows the
bootstrap draws, so the report's point estimates equal the runs' logged test metrics. The
linear reference's test predictions are scored the same way, on the same drawn rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from multitune.models.heads import TaskSpec
from multitune.report import Scored
from multitune.report.stats import ScoreFn
from multitune.training.metrics import (
    correct,
    higher_is_better,
    joint_accuracy,
    primary_metric,
    task_metrics,
    token_counts,
    token_metrics_from_counts,
)


@dataclass(frozen=True)
class SplitTargets:
    """One task's test-split targets (as `TrainingData` encodes them) and its label mask."""

    spec: TaskSpec
    target: np.ndarray
    labelled: np.ndarray


@dataclass(frozen=True)
class SeedRun:
    """One final training run: which tasks, which seed, its MLflow run, its validation and
    test predictions and, for the run that measured it, TAG's affinity over its tasks."""

    run_id: str
    kind: str
    seed: int
    tasks: tuple[str, ...]
    test_pred: dict[str, np.ndarray]
    history: list[dict[str, object]]
    epochs_run: int
    test_metrics: dict[str, dict[str, float]]
    val_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    steps: int | None = None
    best_step: int | None = None
    converged: bool | None = None
    val_pred: dict[str, np.ndarray] = field(default_factory=dict)
    affinity: np.ndarray | None = None

    def predictions(self, split: str) -> dict[str, np.ndarray]:
        """Predictions for every row of the `test` or `val` split, by task."""
        return self.val_pred if split == "val" else self.test_pred


def scored_words(targets: Mapping[str, SplitTargets], run: SeedRun) -> dict[str, int]:
    """Per token task, how many words the run's token metrics score on the split: every
    labelled word of the labelled rows, however long their texts."""
    return {
        name: int(token_counts(t.spec, run.test_pred[name], t.target)[t.labelled, 4].sum())
        for name, t in targets.items()
        if t.spec.type == "token_classification" and name in run.test_pred
    }


class _TaskScorer:
    """A run's metrics of one task on a set of rows; recomputed once per distinct row set."""

    def __init__(self, pred: np.ndarray, targets: SplitTargets) -> None:
        self.pred, self.t = pred, targets
        # The last row set is held (not just its id) so a new array can never alias it.
        self._idx: np.ndarray | None = None
        self._cached: dict[str, float] = {}
        # Token metrics are sums over rows: count each row once, then only sum per draw.
        self._token_counts = (
            token_counts(targets.spec, pred, targets.target) * targets.labelled[:, None]
            if targets.spec.type == "token_classification"
            else None
        )

    def metrics(self, idx: np.ndarray) -> dict[str, float]:
        if self._idx is not idx:
            t = self.t
            if self._token_counts is not None:
                self._cached = token_metrics_from_counts(self._token_counts[idx])
            else:
                self._cached = task_metrics(t.spec, self.pred[idx], t.target[idx], t.labelled[idx])
            self._idx = idx
        return self._cached

    def score(self, metric: str) -> ScoreFn:
        return lambda idx: self.metrics(idx).get(metric, float("nan"))


def task_rows(
    targets: Mapping[str, SplitTargets],
    multi: Sequence[SeedRun],
    single: Mapping[str, Sequence[SeedRun]],
    reference: Mapping[str, np.ndarray] | None = None,
    network: Mapping[str, Sequence[SeedRun]] | None = None,
    sides: Mapping[str, str] | None = None,
    split: str = "test",
) -> list[Scored]:
    """One row per task and metric that the full test split defines (primary metric first).

    Args:
        targets: Each task's test-split targets.
        multi: The multi-task runs, one per seed.
        single: Each task's single-task side, one run per seed (the linear reference's
            predictions repeated, where it is the side).
        reference: The linear reference's test predictions per task (as a run's `test_pred`);
            a task without one gets no reference on its rows.
        network: Each task's single-task network runs, where the side is not the network
            (the floor check's diagnostic); None or a missing task: the side is the network.
        sides: Each task's kind of single-task side ("network" or "linear"; default network).
        split: Whose predictions the runs are scored by (`SeedRun.predictions`): `targets`
            must be that split's (the grouping is chosen on `val`).

    Returns:
        The rows, each scoring its runs (and the reference) with the training library's
        metric functions on whatever test rows it is given.
    """
    rows: list[Scored] = []
    everything = np.arange(len(next(iter(targets.values())).target))
    for name, t in targets.items():
        m_scorers = [_TaskScorer(r.predictions(split)[name], t) for r in multi]
        # A deterministic side (the linear reference, repeated per seed) is scored once.
        by_pred: dict[int, _TaskScorer] = {}
        s_scorers = [
            by_pred.setdefault(id(p), _TaskScorer(p, t))
            for p in (r.predictions(split)[name] for r in single[name])
        ]
        side = (sides or {}).get(name, "network")
        n_runs = (network or {}).get(name) if side != "network" else None
        n_scorers = (
            [_TaskScorer(r.predictions(split)[name], t) for r in n_runs] if n_runs else None
        )
        ref_pred = None if reference is None else reference.get(name)
        ref_scorer = None if ref_pred is None else _TaskScorer(ref_pred, t)
        metrics = list(m_scorers[0].metrics(everything))
        if not metrics:
            continue
        primary = primary_metric(t.spec.type)
        metrics.sort(key=lambda m: m != primary)
        for metric in metrics:
            rows.append(
                Scored(
                    name=name,
                    metric=metric,
                    higher_is_better=higher_is_better(metric),
                    multi=[s.score(metric) for s in m_scorers],
                    single=[s.score(metric) for s in s_scorers],
                    reference=None if ref_scorer is None else ref_scorer.score(metric),
                    network=None if n_scorers is None else [s.score(metric) for s in n_scorers],
                    single_kind=side,
                )
            )
    return rows


def _joint_fn(preds: Sequence[np.ndarray], ts: Sequence[SplitTargets]) -> ScoreFn:
    rights = [correct(t.spec, p, t.target) for p, t in zip(preds, ts, strict=True)]
    masks = [t.labelled for t in ts]

    def fn(idx: np.ndarray) -> float:
        v = joint_accuracy([r[idx] for r in rights], [m[idx] for m in masks])
        return float("nan") if v is None else v

    return fn


def group_rows(
    groups: Mapping[str, Sequence[str]],
    targets: Mapping[str, SplitTargets],
    multi: Sequence[SeedRun],
    single: Mapping[str, Sequence[SeedRun]],
    split: str = "test",
) -> list[Scored]:
    """Joint accuracy of each task group: the multi-task model vs the single-task models of
    its tasks combined seed by seed (regression members make a group unscorable: skipped;
    `split` as in `task_rows`)."""
    rows: list[Scored] = []
    for group, members in groups.items():
        ts = [targets[m] for m in members]
        if any(t.spec.type == "regression" for t in ts):
            continue
        n_seeds = min(len(single[m]) for m in members)
        rows.append(
            Scored(
                name=group,
                metric="joint_accuracy",
                higher_is_better=True,
                multi=[_joint_fn([r.predictions(split)[m] for m in members], ts) for r in multi],
                single=[
                    _joint_fn([single[m][i].predictions(split)[m] for m in members], ts)
                    for i in range(n_seeds)
                ],
                kind="group",
            )
        )
    return rows
