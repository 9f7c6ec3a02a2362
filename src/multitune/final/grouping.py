"""Which tasks to train together: affinity proposes partitions, retraining chooses one.

1. **Affinity.** The first seed's multi-task run measures TAG's lookahead affinity
   (`multitune.training.affinity`): row i, column j is how a step on task i alone moves task
   j's loss. It costs no extra training run.
2. **Candidates.** A partition's affinity score is the sum over tasks j of the mean affinity
   onto j from the other tasks of j's group (0 for a task alone), as TAG scores groups. Up to
   `final.grouping.max_exhaustive` tasks every partition allowed by `together` / `apart` is
   scored (Bell(8) = 4,140); beyond, groups are merged greedily, best merge first, and the
   partitions along the way are scored. The `candidates` best are verified, always beside
   the two the stage trains anyway: all in one and each alone.
3. **Verified by retraining.** Every multi-task group of a candidate is trained with the
   final protocol: the chosen multi-task config narrowed to the group's tasks, the same seeds,
   the same stopping rule (Δm against the single-task sides' validation metrics). A one-task
   group is that task's single-task side, as the comparison has it (network or linear). A
   group shared by two candidates trains once.
4. **Chosen out of fold.** With cross-fitting on (`final.crossfit`, the default), every
   candidate's new groups also train over the cross-fit's folds (the same folds, seeds and
   stopping rule as the all-in-one side) and each candidate is compared with each alone on
   every labelled row, by the corrected resampled t at a Bonferroni-corrected level over the
   candidates (`multitune.report.crossfit`). A candidate whose Δm interval lies above zero is
   *clearly better than each alone*; the best such by cross-fitted Δm is shipped, else each
   alone. Without cross-fitting the same rule reads the validation split's bootstrap (fewer
   rows, and the split the runs stopped on). The test split then measures every candidate
   once, for the report, labelled exploratory; it chooses nothing.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from multitune.config import Params
from multitune.config.final import GroupingConfig
from multitune.errors import ConfigError
from multitune.final.protocol import Trained, compare_sides
from multitune.final.reference import ReferenceResult
from multitune.final.runs import RunJob, Trainings, run_all
from multitune.final.scoring import SeedRun
from multitune.report import Comparison
from multitune.report.crossfit import MethodComparison
from multitune.training import TrainingData

Partition = tuple[tuple[str, ...], ...]
ALL_IN_ONE, EACH_ALONE = "all in one", "each alone"
KIND = "group"


@dataclass(frozen=True)
class Candidate:
    """A partition of the tasks to verify.

    Attributes:
        name: "all in one", "each alone", or "affinity #k" (k-th best by affinity).
        groups: The groups, tasks in the data's order, groups by their first task.
        affinity: The partition's affinity score (`affinity_score`).
    """

    name: str
    groups: Partition
    affinity: float

    @property
    def label(self) -> str:
        """`{speaker, party} {debate}`-style, for tables and tags."""
        return " ".join("{" + ", ".join(g) + "}" for g in self.groups)


@dataclass(frozen=True)
class Verified:
    """A candidate trained and measured: its composed runs (one per seed, each task's
    predictions from its group's run) and both splits' comparisons with each alone."""

    candidate: Candidate
    runs: list[SeedRun]
    val: Comparison
    test: Comparison
    method: MethodComparison | None = None

    @property
    def clearly_better(self) -> bool:
        """Δm interval above zero at the Bonferroni-corrected level: the cross-fitted one
        when measured, else validation's."""
        if self.method is not None:
            return self.method.delta_m.low > 0
        return self.val.delta_m_low > 0

    @property
    def chosen_on(self) -> float:
        """The Δm the choice ranks on: cross-fitted when measured, else validation's."""
        return self.method.delta_m.delta if self.method is not None else self.val.delta_m


@dataclass(frozen=True)
class GroupingResult:
    """The grouping stage's outcome.

    Attributes:
        affinity: The measured affinity (row: the task stepped on, column: the task moved).
        candidates: Every candidate, each alone included, in proposal order.
        verified: Every candidate with its comparisons, in proposal order.
        chosen: The candidate to ship.
        why: One sentence on how it was chosen.
        group_runs: The runs trained for the candidates' groups, by group (one per seed).
        val_confidence: The level of the validation intervals that chose.
        seconds: Wall seconds of the verification runs.
    """

    affinity: pd.DataFrame
    candidates: list[Candidate]
    verified: list[Verified]
    chosen: Candidate
    why: str
    group_runs: dict[tuple[str, ...], list[SeedRun]] = field(default_factory=dict)
    val_confidence: float = 0.95
    seconds: float = 0.0

    @property
    def chosen_verified(self) -> Verified | None:
        """The chosen candidate's measurement (None for each alone, the reference point)."""
        return next((v for v in self.verified if v.candidate == self.chosen), None)


def set_partitions(names: Sequence[str]) -> Iterator[Partition]:
    """Every partition of `names` (restricted growth strings), groups in first-task order."""
    n = len(names)
    if n == 0:
        return
    labels = [0] * n

    def grow(i: int, used: int) -> Iterator[Partition]:
        if i == n:
            groups: list[list[str]] = [[] for _ in range(used)]
            for name, label in zip(names, labels, strict=True):
                groups[label].append(name)
            yield tuple(tuple(g) for g in groups)
            return
        for label in range(used + 1):
            labels[i] = label
            yield from grow(i + 1, max(used, label + 1))

    yield from grow(1, 1)


def affinity_score(groups: Partition, affinity: pd.DataFrame) -> float:
    """Sum over tasks j of the mean affinity onto j from j's groupmates (0 alone; a pair
    never measured counts 0)."""
    total = 0.0
    for group in groups:
        for j in group:
            onto = [affinity.loc[i, j] for i in group if i != j]
            values = [v for v in onto if np.isfinite(v)]
            total += float(np.mean(values)) if values else 0.0
    return total


def _allowed(groups: Partition, cfg: GroupingConfig) -> bool:
    where = {t: k for k, g in enumerate(groups) for t in g}
    together = all(len({where[t] for t in g}) == 1 for g in cfg.together)
    apart = all(where[a] != where[b] for a, b in cfg.apart)
    return together and apart


def _greedy(names: Sequence[str], affinity: pd.DataFrame, cfg: GroupingConfig) -> list[Partition]:
    """From each alone (with `together`'s tasks already joined), the best-scoring merge of
    two groups that `apart` allows, until no merge is left: every partition on the way."""
    order = {t: k for k, t in enumerate(names)}
    groups = [{t} for t in names]
    for members in cfg.together:
        joined = set().union(*(g for g in groups if g & set(members)))
        groups = [g for g in groups if not g & joined] + [joined]

    def as_partition(gs: list[set[str]]) -> Partition:
        ordered = [tuple(sorted(g, key=order.__getitem__)) for g in gs]
        return tuple(sorted(ordered, key=lambda g: order[g[0]]))

    path = [as_partition(groups)]
    while True:
        merges = []
        for a, b in itertools.combinations(range(len(groups)), 2):
            trial = [g for k, g in enumerate(groups) if k not in (a, b)] + [groups[a] | groups[b]]
            if _allowed(as_partition(trial), cfg):
                merges.append((affinity_score(as_partition(trial), affinity), trial))
        if not merges:
            return path
        groups = max(merges, key=lambda m: m[0])[1]
        path.append(as_partition(groups))


def propose(names: Sequence[str], affinity: pd.DataFrame, cfg: GroupingConfig) -> list[Candidate]:
    """All in one, each alone, and the `cfg.candidates` best other allowed partitions by
    affinity (ties: fewer groups first)."""
    names = list(names)
    pool = (
        set_partitions(names)
        if len(names) <= cfg.max_exhaustive
        else iter(_greedy(names, affinity, cfg))
    )
    allowed = [p for p in pool if _allowed(p, cfg)]
    if not allowed:
        raise ConfigError(
            "final.grouping: no partition of the tasks meets both together and apart; "
            "relax one of them"
        )
    everything, alone = (tuple(names),), tuple((t,) for t in names)
    scored = sorted(
        (p for p in allowed if p not in (everything, alone)),
        key=lambda p: (-affinity_score(p, affinity), len(p)),
    )
    out = [
        Candidate(ALL_IN_ONE, everything, affinity_score(everything, affinity)),
        Candidate(EACH_ALONE, alone, 0.0),
    ]
    out += [
        Candidate(f"affinity #{k}", p, affinity_score(p, affinity))
        for k, p in enumerate(scored[: cfg.candidates], start=1)
    ]
    return out


def new_groups(candidates: Sequence[Candidate], names: Sequence[str]) -> list[tuple[str, ...]]:
    """The multi-task groups the candidates need that the stage has not trained (not all in
    one, not one task), each once, in first-seen order."""
    out: list[tuple[str, ...]] = []
    for c in candidates:
        for g in c.groups:
            if 1 < len(g) < len(names) and g not in out:
                out.append(g)
    return out


def merged(parts: Sequence[tuple[tuple[str, ...], SeedRun]], *, run_id: str, seed: int) -> SeedRun:
    """One record whose predictions and metrics for each task are those of the run of its
    group (`parts`: each group with the run that answers it)."""
    owner = {t: r for g, r in parts for t in g}
    return SeedRun(
        run_id=run_id,
        kind=KIND,
        seed=seed,
        tasks=tuple(owner),
        test_pred={t: r.test_pred[t] for t, r in owner.items()},
        val_pred={t: r.val_pred[t] for t, r in owner.items() if t in r.val_pred},
        history=[],
        epochs_run=max(r.epochs_run for _, r in parts),
        test_metrics={t: r.test_metrics.get(t, {}) for t, r in owner.items()},
        val_metrics={t: r.val_metrics.get(t, {}) for t, r in owner.items()},
    )


def compose(
    groups: Partition, trained: Trained, group_runs: Mapping[tuple[str, ...], list[SeedRun]]
) -> list[SeedRun]:
    """One run per seed whose predictions and metrics for each task are its group's run's of
    that seed: the all-in-one run, a group's run, or the task's single-task side."""
    names = [t for g in groups for t in g]
    out = []
    for k, seed_run in enumerate(trained.multi):
        parts: list[tuple[tuple[str, ...], SeedRun]] = []
        for g in groups:
            if len(g) == len(names) and len(groups) == 1:
                parts.append((g, seed_run))
            elif len(g) == 1:
                parts.append((g, trained.single[g[0]][k]))
            else:
                parts.append((g, group_runs[g][k]))
        run_id = "+".join(dict.fromkeys(r.run_id for _, r in parts))
        out.append(merged(parts, run_id=run_id, seed=seed_run.seed))
    return out


def choose(
    verified: Sequence[Verified], alone: Candidate, confidence: float
) -> tuple[Candidate, str]:
    """The best candidate by validation Δm among those clearly better than each alone there;
    each alone when none is."""
    better = [v for v in verified if v.clearly_better]
    pct = f"{confidence:.1%}".replace(".0%", "%")
    oof = any(v.method is not None for v in verified)
    where = "cross-fitted (every labelled row, out of fold)" if oof else "validation"
    if not better:
        return alone, (
            f"no candidate's {where} Δm against each alone had its {pct} interval above "
            "zero, so each task keeps its own model"
        )
    best = max(better, key=lambda v: v.chosen_on)
    if best.method is not None:
        dm = best.method.delta_m
        low, high = dm.low, dm.high
    else:
        low, high = best.val.delta_m_low, best.val.delta_m_high
    return best.candidate, (
        f"{best.candidate.name} had the highest {where} Δm ({best.chosen_on:+.2f}%, "
        f"{pct} interval [{low:+.2f}%, {high:+.2f}%]) of "
        f"the {len(better)} candidate(s) clearly better than each alone"
    )


def _train_groups(
    groups: Sequence[tuple[str, ...]],
    multi_params: Params,
    trained: Trained,
    seeds: Sequence[int],
    data: TrainingData,
    trainings: Trainings,
    on_done: Callable[[RunJob], None] | None,
) -> dict[tuple[str, ...], list[SeedRun]]:
    """Each new group trained over the seeds; its runs by group, in seed order."""
    jobs = [
        RunJob((KIND, g, s), multi_params, KIND, g, s, trained.baseline_val)
        for g in groups
        for s in seeds
    ]
    group_runs: dict[tuple[str, ...], list[SeedRun]] = {}
    for job, rec in run_all(jobs, data, trainings, on_done=on_done):
        group_runs.setdefault(tuple(job.tasks or ()), []).append(rec)
    for runs in group_runs.values():
        runs.sort(key=lambda r: r.seed)
    return group_runs


def verify_groupings(
    params: Params,
    data: TrainingData,
    units: np.ndarray,
    trained: Trained,
    multi_params: Params,
    reference: ReferenceResult | None,
    seeds: Sequence[int],
    *,
    trainings: Trainings | None = None,
    on_done: Callable[[RunJob], None] | None = None,
    out_of_fold: Callable[[Sequence[Candidate], float], dict[str, MethodComparison]] | None = None,
) -> GroupingResult:
    """Propose candidates from `trained.affinity`, train their new groups, measure each
    candidate against each alone on validation (to choose) and on test (to report).

    Args:
        params: The validated params (`final.grouping`, `final.confidence`...).
        data: The training data.
        units: Each row's resampling unit.
        trained: The final stage's runs (`train_sides` with `affinity_every`).
        multi_params: The chosen multi-task config (narrowed to each group's tasks).
        reference: The linear reference (the single-task side where chosen).
        seeds: The final seeds (as `trained`'s).
        trainings: How the group runs train and are recorded (default: one at a time, in
            memory); one that already finished (a resumed stage) is read back.
        on_done: Called as each run finishes.
        out_of_fold: Cross-fits the candidates at the given level, each against each alone
            (the stage's cross-fit); None: choose on validation.
    """
    cfg, names = params.final.grouping, data.task_names
    if trained.affinity is None:
        raise ValueError("verify_groupings needs the affinity (train_sides(affinity_every=...))")
    candidates = propose(names, trained.affinity, cfg)
    start = time.perf_counter()
    trainings = trainings or Trainings(threads=params.final.threads)
    groups = new_groups(candidates, names)
    group_runs = _train_groups(groups, multi_params, trained, seeds, data, trainings, on_done)
    seconds = time.perf_counter() - start
    others = [c for c in candidates if c.name != EACH_ALONE]
    alone = next(c for c in candidates if c.name == EACH_ALONE)
    val_confidence = 1.0 - (1.0 - params.final.confidence) / max(1, len(others))
    methods = out_of_fold(others, val_confidence) if out_of_fold is not None else {}
    verified = []
    for c in others:
        as_multi = replace(trained, multi=compose(c.groups, trained, group_runs))
        val = compare_sides(
            params, data, units, as_multi, reference, split="val", confidence=val_confidence
        )
        test = compare_sides(params, data, units, as_multi, reference)
        verified.append(Verified(c, as_multi.multi, val, test, methods.get(c.name)))
    # All in one is measured whatever `apart` says (it is the stage's multi-task model), but
    # only a grouping the rules allow can ship; each alone is always the fallback.
    chosen, why = choose(
        [v for v in verified if _allowed(v.candidate.groups, cfg)], alone, val_confidence
    )
    return GroupingResult(
        trained.affinity,
        candidates,
        verified,
        chosen,
        why,
        group_runs,
        val_confidence,
        seconds,
    )
