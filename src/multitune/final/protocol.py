"""The comparison protocol's training and scoring, free of tracking: what the final stage,
the calibration benchmark and the controls share.

`train_sides` trains each task's single-task network and the multi-task config over seeds
and settles each task's single-task side; `compare_sides` reads the test split once and
measures both sides. Their runs train as `Trainings` says: its `record` turns a finished run
into a `SeedRun` (the final stage logs it to MLflow, `multitune.final.runs.log_run`; by
default `offline_record` keeps it in memory).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multitune.config import Params
from multitune.final.reference import ReferenceResult
from multitune.final.runs import RunJob, Trainings, mean_metrics, run_all
from multitune.final.scoring import SeedRun, SplitTargets, group_rows, task_rows
from multitune.final.selection import LINEAR, Selection, SideChoice, choose_on_validation
from multitune.final.transfer import transfer_jobs
from multitune.report import Comparison, compare
from multitune.report.stats import dm_pairs_from
from multitune.training import TrainingData
from multitune.training.metrics import delta_m, primary_metric


def delta_m_percent(mt: Any, st: Any) -> float:
    """The training library's Δm (a fraction) in percent, as the report shows it."""
    return 100.0 * delta_m(mt, st)


@dataclass(frozen=True)
class Trained:
    """Every final run, by side.

    Attributes:
        multi: The multi-task runs, one per seed.
        network: Each task's single-task network runs, one per seed.
        single: Each task's single-task side, one run per seed (the linear reference's fit
            repeated, where it is the side).
        sides: Each task's side and how it was chosen.
        transfer: The pairwise transfer runs, by task set.
        baseline_val: Each task's single-task side's validation metrics: what the multi-task
            runs stop on, and what the metrics in Δm are chosen from.
        affinity: TAG's lookahead affinity measured in the first seed's multi-task run (row
            i, column j: a step on task i onto task j's loss); None when not asked.
    """

    multi: list[SeedRun]
    network: dict[str, list[SeedRun]]
    single: dict[str, list[SeedRun]]
    sides: dict[str, SideChoice]
    transfer: dict[tuple[str, ...], SeedRun]
    baseline_val: dict[str, dict[str, float]]
    affinity: pd.DataFrame | None = None

    def all_runs(self) -> list[SeedRun]:
        """The trained runs: multi-task, single-task networks, transfer."""
        nets = [r for rs in self.network.values() for r in rs]
        return [*self.multi, *nets, *self.transfer.values()]


def linear_runs(
    task: str, ref: ReferenceResult, run_id: str, seeds: Sequence[int]
) -> list[SeedRun]:
    """The linear reference as a task's single-task side: one deterministic fit, the same
    for every seed (its seed-to-seed spread is zero)."""
    return [
        SeedRun(
            run_id=run_id,
            kind="linear",
            seed=s,
            tasks=(task,),
            test_pred={task: ref.test_pred[task]},
            val_pred={task: ref.val_pred[task]},
            history=[],
            epochs_run=0,
            test_metrics={task: ref.test[task]},
            val_metrics={task: ref.val.get(task, {})},
        )
        for s in seeds
    ]


def train_sides(
    params: Params,
    data: TrainingData,
    selection: Selection,
    reference: ReferenceResult | None,
    seeds: Sequence[int],
    *,
    trainings: Trainings | None = None,
    reference_run_id: str = "reference",
    on_done: Callable[[RunJob], None] | None = None,
    affinity_every: int | None = None,
) -> Trained:
    """Each task's single-task network and the multi-task config over `seeds` (plus the
    transfer runs `final.transfer` asks for).

    The single-task networks train first. A task that `selection` did not settle (not small)
    then takes the better on validation of its network (mean over seeds) and the linear
    reference; the multi-task runs stop early against the chosen sides' validation metrics.
    With `affinity_every`, the first seed's multi-task run also measures TAG's lookahead
    affinity (`multitune.training.affinity`), which leaves its training unchanged. A run that
    `trainings.reuse` finds finished (a resumed stage) is read back, not trained;
    `trainings.record` turns each trained one into its record.
    """
    cfg, names = params.final, data.task_names
    trainings = trainings or Trainings(threads=cfg.threads)
    with_transfer = cfg.transfer.method == "pairwise" and 2 <= len(names) <= cfg.transfer.max_tasks
    first = [
        RunJob(("single", t, s), selection.network[t], "single", (t,), s)
        for t in names
        for s in seeds
    ]
    if with_transfer:
        first += transfer_jobs(selection.multi, names, cfg.transfer, seeds[0])
    network: dict[str, list[SeedRun]] = {t: [] for t in names}
    transfer: dict[tuple[str, ...], SeedRun] = {}

    def run(jobs: list[RunJob]) -> Iterator[tuple[RunJob, SeedRun]]:
        return run_all(jobs, data, trainings, on_done=on_done)

    for job, rec in run(first):
        if job.kind == "single":
            network[job.key[1]].append(rec)
        else:
            transfer[tuple(job.tasks or ())] = rec
    for t in names:  # seed order, whatever order the workers finished in
        network[t].sort(key=lambda r: r.seed)
    sides, single = _single_sides(data, selection, network, reference, reference_run_id, seeds)
    baseline_val = {t: mean_metrics(single[t], t, "val") for t in names}
    multi_jobs = [
        RunJob(
            ("multi", s),
            selection.multi,
            "multi",
            None,
            s,
            baseline_val,
            affinity_every=affinity_every if s == seeds[0] else None,
        )
        for s in seeds
    ]
    multi, affinity = [], None
    for _, rec in run(multi_jobs):
        multi.append(rec)
        if rec.affinity is not None:
            affinity = pd.DataFrame(rec.affinity, index=names, columns=names)
    multi.sort(key=lambda r: r.seed)
    return Trained(multi, network, single, sides, transfer, baseline_val, affinity)


def _single_sides(
    data: TrainingData,
    selection: Selection,
    network: dict[str, list[SeedRun]],
    reference: ReferenceResult | None,
    reference_run_id: str,
    seeds: Sequence[int],
) -> tuple[dict[str, SideChoice], dict[str, list[SeedRun]]]:
    """Each task's single-task side (what `selection` settled, else the better on validation
    of its network and the linear reference) and that side's runs over the seeds."""
    sides = {
        t: selection.single.get(t)
        or choose_on_validation(
            t,
            selection.network[t],
            mean_metrics(network[t], t, "val"),
            primary_metric(data.task_types[t]),
            reference,
        )
        for t in data.task_names
    }
    single = dict(network)
    for t, side in sides.items():
        if side.side == LINEAR and reference is not None:
            single[t] = linear_runs(t, reference, reference_run_id, seeds)
    return sides, single


def scored_targets(data: TrainingData, split: str = "test") -> dict[str, SplitTargets]:
    """Each task's targets and label mask on `split`."""
    te = data.splits[split]
    return {
        t.name: SplitTargets(
            t, data.targets[t.name][te].cpu().numpy(), data.labelled[t.name][te].cpu().numpy()
        )
        for t in data.tasks
    }


def compare_sides(
    params: Params,
    data: TrainingData,
    units: np.ndarray,
    trained: Trained,
    reference: ReferenceResult | None,
    task_groups: Mapping[str, Sequence[str]] | None = None,
    *,
    split: str = "test",
    confidence: float | None = None,
) -> Comparison:
    """The test split, read once: every task and group, both sides, whole units resampled,
    the metrics in Δm chosen on the single-task side's validation values.

    `split="val"` measures the same on validation (choosing a grouping without the test
    split), at `confidence` (default `final.confidence`)."""
    cfg = params.final
    targets = scored_targets(data, split)
    rows = task_rows(
        targets,
        trained.multi,
        trained.single,
        reference=(reference.val_pred if split == "val" else reference.test_pred)
        if reference
        else None,
        network=trained.network,
        sides={t: c.side for t, c in trained.sides.items()},
        split=split,
    )
    groups = params.task_groups if task_groups is None else task_groups
    rows += group_rows(groups, targets, trained.multi, trained.single, split)
    task_pairs = [(r.name, r.metric) for r in rows if r.kind == "task"]
    pairs, _ = dm_pairs_from(trained.baseline_val, task_pairs)
    rows_of_split = data.splits[split].cpu().numpy()
    return compare(
        rows,
        len(rows_of_split),
        delta_m_percent,
        samples=cfg.bootstrap_samples,
        confidence=cfg.confidence if confidence is None else confidence,
        seed=cfg.seed_base,
        floor_tolerance=cfg.reference.tolerance,
        groups=pd.factorize(units[rows_of_split])[0],
        dm_pairs=pairs,
    )
