"""Calibration of the final stage's verdicts: false-positive rate, interval coverage and power
over many planted tables whose truth is known.

Each table runs the final stage's own code, in-process and with small fixed budgets (no Ray,
no MLflow): the tuned linear reference (`fit_reference`), each side's choice (`select`: k-fold
group-aware CV over train+val for the small tasks), the single-task and multi-task runs over
seeds and the comparison (`multitune.final.protocol.train_sides` and `compare_sides`: the
table's groups resampled, the Δm pairs fixed on validation, family-wise verdicts). Then both
sides' trained models (the linear reference through `ReferenceResult.predict`) score a fresh
sample of 20,000 rows
from the same generator: the *true delta* of a task is the mean over seeds of multi minus
the mean over seeds of single on that sample.

Generator (one per table, its directions drawn from the table's seed):

* Rows come in groups of 4. A group shares a feature offset (half of each feature's variance)
  and a random effect on the small tasks' labels (sd 0.6, as large as the label noise), so
  rows of a group are not independent evidence and row-level resampling would be too
  narrow. Train / val / test are assigned by group (750 / 150 / 150 groups).
* Two modalities `a` and `b` of 32 dims each.
* `big`: a 3-class task on every row (3,000 labelled train rows, 600 val), read off one
  direction `u` of modality `a`.
* `s1`, `s2`: binary tasks labelled on a few groups of each split (200 train, 152 val, 300
  test rows): label = [signal + group effect + noise > 0], signal, group effect and noise
  of sd 1, 0.6 and 0.6.
* Null tables: each small task's signal is its own random direction of modality `b`, which
  `big` never reads: there is nothing to transfer.
* Transfer tables (the planted effect): both small tasks' signal is `big`'s direction `u`
  (cosine 1 between what `big` teaches and what they need). A single-task model learns a
  32-dim direction from 200 noisy rows; the multi-task trunk learns it from 3,000. The
  measured true delta of that effect is printed (mean and range over tables).

Both sides choose between the same two network finalists: a one-hidden-layer network
(encoder width 16 and a trunk of 16) first and a linear one (encoder layers 0, empty trunk)
second; the single-task side also has the linear reference. `single_val` (the baselines
search's record of its best config) is the first finalist trained once (seed 0) for `big`
(the one task chosen on validation); the small tasks' sides are chosen by the CV, and for
them the reference's validation metrics stand in (read only if the CV fails).

A null verdict is a false positive when it says "improves" or "hurts" on a task whose true
delta is negligible (|true delta| < `NEGLIGIBLE` in the primary metric's units: AUROC for the
small tasks, macro-F1 for `big`), or claims against the true delta's sign. A null table's
tasks need not all be true nulls (the multi-task model can really be worse at `big`: a claim
there is right), so the family-wise rate is the standard one under a partial null: the share
of null tables with at least one false positive among their verdicts. The rate over the null
tables whose every task is negligible is printed too, with their count. The per-task rate is
over null (table, task) pairs with a negligible true delta. Coverage is over every (table,
task).
Power is the share of transfer (table, small task) pairs whose verdict is "improves".

Run: ``python benchmarks/calibration.py`` (80 null and 20 transfer tables: 80 nulls without a
false positive bound the rate below 4.5%; 8-10 s per table on 2 free cores, two at a time),
``--quick`` (8 and 4), ``--nulls``, ``--transfers``, ``--jobs``, ``--samples``, ``--seed``.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import numpy as np

GROUP_ROWS = 4
DIM = 32
GROUPS = {"train": 750, "val": 150, "test": 150}
SMALL_GROUPS = {"train": 50, "val": 38, "test": 75}  # groups labelled for each small task
FRESH_GROUPS = 5000  # 20,000 rows for the true delta
FEATURE_GROUP_SHARE = 0.5  # share of each feature's variance that a group shares
GROUP_EFFECT, LABEL_NOISE = 0.6, 0.6  # sd on the small tasks' label scale (signal sd 1)
SMALL = ("s1", "s2")
TASKS = ("big", *SMALL)
NEGLIGIBLE = 0.01
SEEDS = 3
MAX_VAL_ROWS = 300  # the small tasks (152 val rows) are cross-validated, big (600) is not
FOLDS = 5  # the stage's default
LEVEL = 0.95


@dataclass(frozen=True)
class Generator:
    """A planted table's law: fixed directions, fresh rows on every `draw`.

    Attributes:
        u: `big`'s direction on modality `a`, unit norm.
        small: Small task -> (modality, unit direction) its signal reads.
    """

    u: np.ndarray
    small: dict[str, tuple[str, np.ndarray]]

    @classmethod
    def planted(cls, rng: np.random.Generator, transfer: bool) -> Generator:
        def unit() -> np.ndarray:
            v = rng.normal(size=DIM)
            return v / np.linalg.norm(v)

        u = unit()
        small = {t: ("a", u) if transfer else ("b", unit()) for t in SMALL}
        return cls(u, small)

    def draw(
        self, groups: int, rng: np.random.Generator
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
        """`groups` groups of rows: features, labels (every row labelled), group of each row."""
        n = groups * GROUP_ROWS
        group = np.repeat(np.arange(groups), GROUP_ROWS)
        features = {
            m: (
                math.sqrt(FEATURE_GROUP_SHARE) * rng.normal(size=(groups, DIM))[group]
                + math.sqrt(1.0 - FEATURE_GROUP_SHARE) * rng.normal(size=(n, DIM))
            ).astype(np.float32)
            for m in ("a", "b")
        }
        big_signal = features["a"] @ self.u + 0.2 * rng.normal(size=n)
        labels: dict[str, np.ndarray] = {
            "big": np.array(["lo", "mid", "hi"], dtype=object)[
                np.digitize(big_signal, [-0.5, 0.5])
            ]
        }
        for t, (modality, direction) in self.small.items():
            effect = GROUP_EFFECT * rng.normal(size=groups)[group]
            score = features[modality] @ direction + effect + LABEL_NOISE * rng.normal(size=n)
            labels[t] = np.where(score > 0.0, "yes", "no").astype(object)
        return features, labels, group


@dataclass(frozen=True)
class TableJob:
    """One table to run: its kind, index, data seed and bootstrap replicates."""

    kind: str  # "null" or "transfer"
    index: int
    seed: int
    samples: int


@dataclass
class TaskOutcome:
    """One task of one table: the stage's verdict and interval against the true delta."""

    task: str
    side: str
    verdict: str
    raw_verdict: str
    delta: float
    true_delta: float
    ci: tuple[float, float]
    adj: tuple[float, float]
    below_floor: bool

    def covered(self, adjusted: bool = False) -> bool:
        low, high = self.adj if adjusted else self.ci
        return bool(low <= self.true_delta <= high)


@dataclass
class TableOutcome:
    """What one table gave."""

    kind: str
    index: int
    seconds: float
    tasks: list[TaskOutcome] = field(default_factory=list)
    not_converged: int = 0
    runs: int = 0


def _params(samples: int) -> Any:
    from multitune.config import validate_params

    return validate_params(
        {
            "data": {
                "source": "x.parquet",
                "modalities": {m: {"column": m, "encoder": {"name": "precomputed"}} for m in "ab"},
            },
            "tasks": [
                {"name": "big", "type": "classification", "column": "big"},
                *({"name": t, "type": "binary", "column": t} for t in SMALL),
            ],
            "model": {
                "encoder": {"hidden": 16, "layers": 1, "dropout": 0.0},
                "sharing": {"hidden": [16]},
            },
            "train": {
                "epochs": 60,
                "epoch_steps": 15,
                "patience": 5,
                "batch_size": 32,
                "lr": 3e-3,
                "device": "cpu",
                "sampling": {"name": "uniform"},
            },
            "final": {
                "seeds": SEEDS,
                "bootstrap_samples": samples,
                "confidence": LEVEL,
                "workers": 1,
                "threads": 1,
                "transfer": {"method": "none"},
                "register_model": False,
                "selection": {"max_val_rows": MAX_VAL_ROWS, "finalists": 2, "folds": FOLDS},
            },
        }
    )


def _linear(params: Any) -> Any:
    """The linear finalist: one linear map per modality, no trunk layer."""
    model = params.model.model_copy(
        update={
            "encoder": params.model.encoder.model_copy(update={"layers": 0}),
            "sharing": params.model.sharing.model_copy(update={"hidden": []}),
        }
    )
    return params.model_copy(update={"model": model})


def _labelled_split(rng: np.random.Generator, groups: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Split of each group, and per small task the groups labelled for it (whole groups)."""
    order = rng.permutation(groups)
    split_of = np.empty(groups, dtype=object)
    start = 0
    labelled: dict[str, np.ndarray] = {t: np.zeros(groups, bool) for t in SMALL}
    for split, count in GROUPS.items():
        members = order[start : start + count]
        split_of[members] = split
        start += count
        for t in SMALL:
            labelled[t][rng.choice(members, SMALL_GROUPS[split], replace=False)] = True
    return split_of, labelled


def run_table(job: TableJob) -> TableOutcome:
    """Plant one table, run the final stage's pieces on it and measure the true deltas."""
    import torch

    from multitune.final.protocol import compare_sides, offline_record, train_sides
    from multitune.final.reference import fit_reference
    from multitune.final.runs import RunJob, fit
    from multitune.final.selection import LINEAR, select
    from multitune.models.heads import TaskSpec
    from multitune.report import task_verdicts
    from multitune.training import TrainingData, predict_rows
    from multitune.training.metrics import primary_metric, task_metrics

    torch.set_num_threads(1)
    started = time.perf_counter()
    rng = np.random.default_rng(job.seed)
    gen = Generator.planted(rng, job.kind == "transfer")
    n_groups = sum(GROUPS.values())
    features, labels, group = gen.draw(n_groups, rng)
    split_of, small_groups = _labelled_split(rng, n_groups)
    split = split_of[group]
    for t in SMALL:
        labels[t] = np.where(small_groups[t][group], labels[t], None).astype(object)
    params = _params(job.samples)
    cfg = params.final
    specs = [TaskSpec(t, None) for t in params.tasks]
    data = TrainingData.from_arrays(features, specs, labels, split)
    units = group.astype(np.int64)
    net, lin = params, _linear(params)
    seeds = [cfg.seed_base + i for i in range(cfg.seeds)]
    out = TableOutcome(job.kind, job.index, 0.0)

    # Phase choose (stage._choose): the reference, then each side's config.
    ref = fit_reference(data, cfg.reference)
    searched = fit(RunJob(("search", "big"), net, "single", ("big",), 0), data)
    single_val = {"big": searched.result.metrics["val"]["big"]}
    single_val |= {t: ref.val[t] for t in SMALL}
    sel = select(
        params,
        data,
        units,
        singles={t: [net, lin] for t in TASKS},
        single_val=single_val,
        multis=[net, lin],
        reference=ref,
        workers=1,
    )
    out.runs += 1 + sel.cv_runs

    # Phases train and compare: the final stage's own (`multitune.final.protocol`), with
    # each run's model kept for the truth below.
    models: dict[tuple[str, int], Any] = {}

    def record(rj: Any, fitted: Any) -> Any:
        models[(rj.kind if rj.kind == "multi" else rj.key[1], rj.seed)] = fitted.result.model
        return offline_record(rj, fitted)

    trained = train_sides(params, data, sel, ref, seeds, record=record)
    out.runs += len(models)
    out.not_converged = sum(r.converged is False for r in trained.all_runs())
    verdicts = task_verdicts(compare_sides(params, data, units, trained, ref))

    # The truth: both sides' trained models on a fresh sample from the same generator.
    f_features, f_labels, _ = gen.draw(FRESH_GROUPS, rng)
    n_fresh = FRESH_GROUPS * GROUP_ROWS
    fresh = TrainingData.from_arrays(f_features, data.tasks, f_labels, ["test"] * n_fresh)
    everything = fresh.splits["test"]
    multi_preds = [predict_rows(models[("multi", s)], fresh, everything) for s in seeds]
    for spec in data.tasks:
        t = spec.name
        y, mask = fresh.targets[t].numpy(), fresh.labelled[t].numpy()

        def score(
            pred: Any, spec: Any = spec, y: np.ndarray = y, mask: np.ndarray = mask
        ) -> float:
            p = pred.numpy() if hasattr(pred, "numpy") else pred
            return task_metrics(spec, p, y, mask)[primary_metric(spec.type)]

        m_true = float(np.mean([score(p[t]) for p in multi_preds]))
        if trained.sides[t].side == LINEAR:
            s_true = score(ref.predict(t, {m: f.numpy() for m, f in fresh.features.items()}))
        else:
            s_true = float(
                np.mean([score(predict_rows(models[(t, s)], fresh, everything)[t]) for s in seeds])
            )
        v = verdicts[t]
        row = v.row
        out.tasks.append(
            TaskOutcome(
                task=t,
                side=trained.sides[t].side,
                verdict=v.verdict,
                raw_verdict=row.raw_verdict,
                delta=row.delta,
                true_delta=m_true - s_true,
                ci=(row.ci_low, row.ci_high),
                adj=(row.adj_low, row.adj_high),
                below_floor=row.chosen_below_floor,
            )
        )
    out.seconds = time.perf_counter() - started
    return out


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact two-sided interval of a binomial proportion k / n."""
    from scipy.stats import beta

    if n == 0:
        return math.nan, math.nan
    a = (1.0 - level) / 2.0
    low = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1.0 - a, k + 1, n - k))
    return low, high


def _rate(k: int, n: int) -> str:
    if n == 0:
        return "n/a (no case)"
    low, high = clopper_pearson(k, n)
    return f"{k}/{n} = {k / n:.1%} (95% Clopper-Pearson [{low:.1%}, {high:.1%}])"


def _line(o: TableOutcome) -> str:
    parts = []
    for t in o.tasks:
        parts.append(
            f"{t.task}[{t.side[:3]}] {t.verdict[:8]:<8} d {t.delta:+.3f} "
            f"true {t.true_delta:+.3f} CI [{t.ci[0]:+.3f},{t.ci[1]:+.3f}]"
            f"{'' if t.covered() else '!'}"
        )
    return f"{o.kind:<8} {o.index:>2} {o.seconds:5.0f}s  " + " | ".join(parts)


STRONG = 0.05
"""A planted transfer's true delta (AUROC) from which its power is also printed apart."""


def summary(outcomes: Sequence[TableOutcome]) -> str:
    """The summary block: false positives on nulls, coverage, power."""
    nulls = [o for o in outcomes if o.kind == "null"]
    transfers = [o for o in outcomes if o.kind == "transfer"]
    claims = ("improves", "hurts")

    def negligible(t: TaskOutcome) -> bool:
        return abs(t.true_delta) < NEGLIGIBLE

    def false(t: TaskOutcome, word: str) -> bool:
        """A claim on a negligible true delta, or a claim against the true delta's sign."""
        if word not in claims:
            return False
        return negligible(t) or (word == "improves") != (t.true_delta > 0)

    clean = [o for o in nulls if all(negligible(t) for t in o.tasks)]
    fw = sum(any(t.verdict in claims for t in o.tasks) for o in clean)
    fw_raw = sum(any(t.raw_verdict in claims for t in o.tasks) for o in clean)
    fw_all = sum(any(false(t, t.verdict) for t in o.tasks) for o in nulls)
    fw_all_raw = sum(any(false(t, t.raw_verdict) for t in o.tasks) for o in nulls)
    null_tasks = [t for o in nulls for t in o.tasks if negligible(t)]
    per = sum(t.verdict in claims for t in null_tasks)
    per_raw = sum(t.raw_verdict in claims for t in null_tasks)
    everything = [t for o in outcomes for t in o.tasks]
    finite = [t for t in everything if all(map(math.isfinite, t.ci))]
    covered = sum(t.covered() for t in finite)
    adj_cov = sum(t.covered(adjusted=True) for t in finite)
    small_cov = [t for t in finite if t.task in SMALL]
    tables_cov = [o for o in outcomes if all(t.covered(adjusted=True) for t in o.tasks)]
    planted = [t for o in transfers for t in o.tasks if t.task in SMALL]
    power = sum(t.verdict == "improves" for t in planted)
    strong = [t for t in planted if t.true_delta >= STRONG]
    wrong_sign = sum(
        t.verdict in claims and (t.verdict == "improves") != (t.true_delta > 0) for t in everything
    )
    true_planted = [t.true_delta for t in planted]
    sides: dict[str, int] = {}
    for o in outcomes:
        for t in o.tasks:
            key = f"{t.task}:{t.side}"
            sides[key] = sides.get(key, 0) + 1
    null_true = {
        task: [t.true_delta for o in nulls for t in o.tasks if t.task == task] for task in TASKS
    }
    lines = [
        "",
        "=" * 78,
        f"calibration summary: {len(nulls)} null and {len(transfers)} transfer tables, "
        f"{SEEDS} seeds, {LEVEL:.0%} intervals",
        "=" * 78,
        "family-wise false-positive rate on the nulls (a table errs when any verdict claims "
        f"'improves'/'hurts' on a task whose true delta is negligible, |true| < {NEGLIGIBLE}, "
        "or claims against the true delta's sign):",
        f"  adjusted verdicts (what the report says): {_rate(fw_all, len(nulls))}",
        f"  raw per-task intervals (no adjustment):   {_rate(fw_all_raw, len(nulls))}",
        f"  nulls whose every task's true delta is negligible: {len(clean)} of {len(nulls)}; "
        f"among them any claim: adjusted {_rate(fw, len(clean))}, raw "
        f"{_rate(fw_raw, len(clean))}",
        f"  per-task rate (adjusted), null tasks with negligible truth: "
        f"{_rate(per, len(null_tasks))}",
        f"  per-task rate (raw):                                        "
        f"{_rate(per_raw, len(null_tasks))}",
        *(
            f"  null true delta of {task}: mean {np.mean(v):+.4f}, min {np.min(v):+.4f}, max "
            f"{np.max(v):+.4f}; negligible in {sum(abs(x) < NEGLIGIBLE for x in v)} of {len(v)}"
            for task, v in null_true.items()
            if v
        ),
        f"coverage of the raw {LEVEL:.0%} intervals (hold the true delta), every (table, task): "
        f"{_rate(covered, len(finite))}",
        f"  small tasks only: {_rate(sum(t.covered() for t in small_cov), len(small_cov))}",
        f"  family-wise adjusted intervals, per task: {_rate(adj_cov, len(finite))}",
        f"  family-wise adjusted intervals, every task of a table at once: "
        f"{_rate(len(tables_cov), len(outcomes))}",
        f"  intervals not reported (NaN): {len(everything) - len(finite)}",
        "power on the planted transfer ('improves' on a small task): "
        f"{_rate(power, len(planted))}",
        f"  raw per-task intervals (no adjustment): "
        f"{_rate(sum(t.raw_verdict == 'improves' for t in planted), len(planted))}",
        f"  where the true delta is at least {STRONG} AUROC: "
        f"{_rate(sum(t.verdict == 'improves' for t in strong), len(strong))}",
        f"  planted true delta (AUROC): mean {np.mean(true_planted):+.4f}, min "
        f"{np.min(true_planted):+.4f}, max {np.max(true_planted):+.4f}"
        if true_planted
        else "  planted true delta: none",
        f"verdicts of the wrong sign (any table, any task): {wrong_sign}",
        f"chosen single-task sides: {', '.join(f'{k} {v}' for k, v in sorted(sides.items()))}",
        f"chosen side below the linear floor: {sum(t.below_floor for t in everything)}; runs "
        f"stopped by their cap while improving: {sum(o.not_converged for o in outcomes)} of "
        f"{sum(o.runs for o in outcomes)}",
        f"table time: mean {np.mean([o.seconds for o in outcomes]):.0f} s",
        "targets: family-wise false-positive rate <= 5%, coverage >= 93%, power >= 80%",
    ]
    return "\n".join(lines)


def _jobs(args: argparse.Namespace) -> list[TableJob]:
    nulls, transfers = (8, 4) if args.quick else (args.nulls, args.transfers)
    root = np.random.SeedSequence(args.seed)
    seeds = root.generate_state(nulls + transfers)
    jobs = [TableJob("null", i, int(seeds[i]), args.samples) for i in range(nulls)]
    jobs += [
        TableJob("transfer", i, int(seeds[nulls + i]), args.samples) for i in range(transfers)
    ]
    # Interleaved, so a run cut short still holds both kinds.
    return sorted(jobs, key=lambda j: j.index / (nulls if j.kind == "null" else transfers))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nulls", type=int, default=80, help="null tables (default 80)")
    parser.add_argument("--transfers", type=int, default=20, help="transfer tables (default 20)")
    parser.add_argument("--quick", action="store_true", help="8 null and 4 transfer tables")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--samples", type=int, default=1000, help="bootstrap replicates (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    jobs = _jobs(args)
    started = time.perf_counter()
    print(
        f"{len(jobs)} tables on {args.jobs} process(es); per task: side[net|lin], verdict, "
        "delta on test, true delta, raw CI ('!': misses the true delta)",
        flush=True,
    )
    outcomes: list[TableOutcome] = []
    if args.jobs <= 1:
        for job in jobs:
            outcomes.append(run_table(job))
            print(_line(outcomes[-1]), flush=True)
    else:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_table, job) for job in jobs]
            for future in as_completed(futures):
                outcomes.append(future.result())
                print(_line(outcomes[-1]), flush=True)
    outcomes.sort(key=lambda o: (o.kind, o.index))
    print(summary(outcomes))
    print(f"wall time: {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
