"""The final stage: retrain the best configs over seeds, measure, report, register."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multitune.config import Params
from multitune.config.final import FinalConfig
from multitune.console import console
from multitune.data.artifacts import read_units
from multitune.final import inputs
from multitune.final.crossfit import (
    CrossFit,
    compose_groups,
    crossfit,
    crossfit_groups,
    method_comparison,
)
from multitune.final.grouping import (
    ALL_IN_ONE,
    Candidate,
    GroupingResult,
    merged,
    new_groups,
    verify_groupings,
)
from multitune.final.grouping import KIND as GROUP_KIND
from multitune.final.paths import FinalPaths
from multitune.final.progress import Progress, phase, reporting
from multitune.final.protocol import (
    Trained,
    compare_sides,
    delta_m_percent,
    scored_targets,
    train_sides,
)
from multitune.final.reference import ReferenceResult, fit_reference
from multitune.final.report_inputs import budgets, curves, provenance
from multitune.final.resume import Ledger, attempt_tags, interrupted_attempt
from multitune.final.runs import Fitted, RunJob, fit, mean_metrics, run_name, training_backend
from multitune.final.scoring import SeedRun, scored_words
from multitune.final.selection import Selection, select
from multitune.final.sweep_view import sweep_view
from multitune.final.transfer import transfer_matrix
from multitune.report import (
    Comparison,
    ReportInputs,
    RunRecord,
    overall_verdict,
    render,
    summary_text,
    task_verdicts,
    write_curves,
)
from multitune.report.crossfit import MethodComparison, MethodRow
from multitune.report.grouping import CandidateView, GroupingView
from multitune.tracking import (
    base_tags,
    connect,
    data_hash,
    params_hash,
    stage_run,
)
from multitune.tracking.gate import Verdict
from multitune.tracking.lineage import log_inputs, split_inputs
from multitune.training import TrainingData
from multitune.training.metrics import objective
from multitune.tuning.remote import ray_trainings, wants_ray

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinalOutcome:
    """What the stage produced."""

    summary: str
    delta_m: float
    registration: Any | None
    run_id: str


def _safe_delta_m(mt: dict[str, dict[str, float]], st: dict[str, dict[str, float]]) -> float:
    """Δm (percent) over the tasks both sides score; NaN when none (e.g. no val labels)."""
    shared = {t: m for t, m in mt.items() if m and st.get(t)}
    try:
        return delta_m_percent(shared, {t: st[t] for t in shared}) if shared else float("nan")
    except ValueError:
        return float("nan")


def _workers(cfg: FinalConfig) -> int:
    if cfg.workers is not None:
        return cfg.workers
    return max(1, (os.cpu_count() or 1) // (cfg.threads or 1))


@dataclass(frozen=True)
class _Stage:
    """What every phase reads: the params, data, seeds, the stage's MLflow run and its
    ledger (every run of the stage is logged, or found again, through it)."""

    params: Params
    paths: FinalPaths
    data: TrainingData
    units: np.ndarray
    seeds: list[int]
    tags: dict[str, str]
    dhash: str
    workers: int
    run: Any
    tmp: Path
    ledger: Ledger

    @property
    def names(self) -> list[str]:
        return self.data.task_names

    @property
    def types(self) -> dict[str, str]:
        return {t.name: t.type for t in self.data.tasks}

    def model_dir(self, kind: str, tasks: tuple[str, ...] | None, seed: int) -> Path:
        """Where a run's model is saved (`_saved_model`)."""
        return _model_dir(self.tmp, kind, tasks, seed)


SAVED = ("multi", "single", GROUP_KIND)


def _model_dir(tmp: Path, kind: str, tasks: tuple[str, ...] | None, seed: int) -> Path:
    return tmp / "models" / f"{kind}-{'+'.join(tasks or ('all',))}-s{seed}"


def _saved_model(tmp: Path) -> Callable[[RunJob], Path | None]:
    """Where each job's model is kept, to publish: the shipped grouping may route a task to
    any multi-task, group or single-task network."""
    return lambda job: (
        _model_dir(tmp, job.kind, job.tasks, job.seed) if job.kind in SAVED else None
    )


@dataclass(frozen=True)
class _Chosen:
    """Phase `choose`: the linear reference and each side's config."""

    reference: ReferenceResult | None
    reference_runs: list[RunRecord]
    selection: Selection


def run_final(params: Params, paths: FinalPaths, device: str | None = None) -> FinalOutcome:
    """Run the final stage and write `paths.reports` (see DESIGN.md, stage `final`).

    The protocol, one phase each: `_choose` (the linear reference; each side's config, by
    cross-validation for small tasks), `_train` (each side's config over seeds), `_group`
    (which tasks to train together: affinity, candidates verified by retraining), `_compare`
    (the test split, read once: bootstrap intervals and verdicts), `_publish` (log and
    register the shipped model) and `_report`.

    Args:
        params: The validated params.
        paths: Inputs and outputs.
        device: Training device override (default: `train.device`).

    Returns:
        The printed summary, the overall Δm, the registration and the stage's run id.
    """
    cfg = params.final
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    tracking = connect(params.mlflow, paths.root)
    data = TrainingData.from_files(paths.data, params, device)
    data_files = [
        paths.data / "dataset.parquet",
        paths.data / "splits.parquet",
        paths.data / "features",
    ]
    dhash = data_hash(data_files)
    attempt = attempt_tags(params, dhash, paths.root)
    interrupted = interrupted_attempt(attempt)
    with (
        _backend(params, data),
        reporting(Progress(_say)),
        stage_run(
            "final",
            params,
            project_root=paths.root,
            data_paths=data_files,
            run_id=interrupted,
            tags=attempt,
        ) as run,
        tempfile.TemporaryDirectory(prefix="multitune-final-") as tmp,
    ):
        tags = base_tags("final", params, project_root=paths.root, data_hash=dhash)
        ledger = Ledger.open(run.run_id, tags, _saved_model(Path(tmp)))
        if interrupted is not None:
            console.print(
                f"final: resuming the interrupted run {interrupted}: "
                f"{len(ledger.finished)} finished run(s) are read back, not retrained",
                markup=False,
                soft_wrap=True,
            )
        stage = _Stage(
            params=params,
            paths=paths,
            data=data,
            units=read_units(paths.data / "splits.parquet", data.ids),
            seeds=[cfg.seed_base + i for i in range(cfg.seeds)],
            tags=tags,
            dhash=dhash,
            workers=_workers(cfg),
            run=run,
            tmp=Path(tmp),
            ledger=ledger,
        )
        with phase("choosing configs"):
            chosen = _choose(stage)
        with phase("training both sides over seeds"):
            trained = _train(stage, chosen)
        comparison = _compare(stage, chosen, trained)
        with phase("cross-fitting"):
            xfit = _crossfit(stage, chosen, trained)
        method = _method(stage, xfit, comparison)
        with phase("grouping candidates"):
            grouping = _group(stage, chosen, trained, xfit, comparison)
        shipped, registration = _publish(stage, chosen, trained, comparison, grouping, method)
        report = _report(
            stage,
            chosen,
            trained,
            comparison,
            shipped,
            registration,
            tracking,
            grouping,
            method,
            xfit,
        )
        run.log_metrics({"runs_trained": ledger.trained, "runs_reused": ledger.reused})
    summary = summary_text(report)
    return FinalOutcome(summary, comparison.delta_m, registration, run.run_id)


def _say(line: str) -> None:
    console.print(line, markup=False, soft_wrap=True)


@contextlib.contextmanager
def _backend(params: Params, data: TrainingData) -> Iterator[None]:
    """Every training of the stage on Ray (`multitune.tuning.remote`) when `final.backend`
    says so, else in the local process pool."""
    if not wants_ray(params.final.backend, params):
        yield
        return

    def one_task(job: RunJob) -> bool:
        return job.tasks is not None and len(job.tasks) == 1

    def with_node(fitted: Fitted, node: str) -> Fitted:
        return dataclasses.replace(fitted, node=node)

    with (
        ray_trainings(params, data, fit, one_task, with_node) as trainings,
        training_backend(trainings),
    ):
        _say(f"final: trainings run on Ray ({params.final.backend})")
        yield


def _choose(stage: _Stage) -> _Chosen:
    """The linear reference (tuned on validation), then each side's config (`selection`)."""
    params, paths, cfg = stage.params, stage.paths, stage.params.final
    ref: ReferenceResult | None = None
    reference_runs: list[RunRecord] = []
    if cfg.reference.enabled:
        with console.status("final: linear reference (tuned on validation)"):
            ref = fit_reference(stage.data, cfg.reference)
        fitted = ref

        def log(handle: Any) -> None:
            handle.log_params(
                {"grid": cfg.reference.model_dump(mode="json"), "chosen": fitted.chosen}
            )
            handle.log_metrics({"val": fitted.val, "test": fitted.test})

        run_id = stage.ledger.child(
            "reference-linear", "reference", {**stage.tags, "kind": "reference"}, log
        )
        reference_runs.append(RunRecord(run_id, "reference", tuple(stage.names), None))
    best_multi = inputs.best_multitask(params, paths.sweep)
    singles = {
        t: inputs.finalists(
            params,
            paths.baselines / "finalists" / t,
            inputs.best_single(params, paths.baselines, t),
        )
        for t in stage.names
    }
    with console.status("final: choosing each side's config (CV for small tasks)"):
        selection = select(
            params,
            stage.data,
            stage.units,
            singles=singles,
            single_val=inputs.baseline_val(paths.baselines),
            multis=inputs.finalists(params, paths.sweep / "finalists", best_multi),
            reference=ref,
            workers=stage.workers,
            record=stage.ledger.record,
            reuse=stage.ledger.find,
        )
    stage.run.log_params({"small_tasks": selection.small})
    stage.run.log_metrics(
        {"selection_cv_runs": selection.cv_runs, "selection_cv_seconds": selection.cv_seconds}
    )
    return _Chosen(ref, reference_runs, selection)


def _train(stage: _Stage, chosen: _Chosen) -> Trained:
    """Each side's config over seeds, every run logged as a child run of the stage's."""
    n = len(stage.names) * len(stage.seeds)
    with console.status(f"final: {n} single-task runs, then the multi-task runs") as status:
        trained = train_sides(
            stage.params,
            stage.data,
            chosen.selection,
            chosen.reference,
            stage.seeds,
            record=stage.ledger.record,
            reuse=stage.ledger.find,
            reference_run_id=chosen.reference_runs[0].run_id if chosen.reference_runs else "",
            workers=stage.workers,
            on_done=lambda job: status.update(f"final: training {run_name(job, job.tasks or ())}"),
            affinity_every=_affinity_every(stage),
        )
    stage.run.log_params({"single_side": {t: c.side for t, c in trained.sides.items()}})
    return trained


def _affinity_every(stage: _Stage) -> int | None:
    grouping = stage.params.final.grouping
    return grouping.every if grouping.method == "tag" and len(stage.names) >= 2 else None


def _crossfit(stage: _Stage, chosen: _Chosen, trained: Trained) -> CrossFit | None:
    """Both sides over `final.crossfit`'s folds (`multitune.final.crossfit`): the evidence
    about the method."""
    xf = stage.params.final.crossfit
    if not xf.enabled:
        return None
    n = xf.folds * xf.repeats
    with console.status(f"final: cross-fitting both sides over {n} folds") as status:
        result = crossfit(
            stage.params,
            stage.data,
            stage.units,
            sides=trained.sides,
            network=chosen.selection.network,
            multi=chosen.selection.multi,
            workers=stage.workers,
            record=stage.ledger.record,
            reuse=stage.ledger.find,
            on_done=lambda job: status.update(
                f"final: cross-fitting, {job.kind} {'+'.join(job.tasks or ('all',))} "
                f"fold {job.key[-1] + 1}/{n}"
            ),
        )
    stage.run.log_metrics({"crossfit_runs": result.runs, "crossfit_seconds": result.seconds})
    return result


def _method(
    stage: _Stage, xfit: CrossFit | None, comparison: Comparison
) -> MethodComparison | None:
    """The verdict about the method, from the cross-fit (`multitune.report.crossfit`)."""
    if xfit is None:
        return None
    cfg = stage.params.final
    method = method_comparison(
        xfit,
        stage.data,
        comparison.dm_metrics,
        margin=cfg.crossfit.margin,
        confidence=cfg.confidence,
    )
    dm = method.delta_m
    stage.run.log_metrics(
        {
            "method_delta_m": dm.delta,
            "method_delta_m_ci_low": dm.low,
            "method_delta_m_ci_high": dm.high,
        }
    )
    stage.run.log_params({"method_verdict": method.verdict})
    return method


def _out_of_fold(stage: _Stage, chosen: _Chosen, xfit: CrossFit, comparison: Comparison) -> Any:
    """The grouping candidates cross-fitted on the verdict's folds, each against each alone."""
    cfg = stage.params.final

    def measure(candidates: list[Candidate], level: float) -> dict[str, MethodComparison]:
        groups = new_groups(candidates, stage.names)
        started = time.perf_counter()
        with console.status(f"final: cross-fitting {len(groups)} candidate group(s)"):
            per_group = crossfit_groups(
                stage.params,
                stage.data,
                xfit,
                groups,
                chosen.selection.multi,
                workers=stage.workers,
                record=stage.ledger.record,
                reuse=stage.ledger.find,
            )
        stage.run.log_metrics({"grouping_crossfit_seconds": time.perf_counter() - started})
        return {
            c.name: method_comparison(
                compose_groups(xfit, c.groups, per_group),
                stage.data,
                comparison.dm_metrics,
                margin=cfg.crossfit.margin,
                confidence=level,
            )
            for c in candidates
        }

    return measure


def _group(
    stage: _Stage,
    chosen: _Chosen,
    trained: Trained,
    xfit: CrossFit | None = None,
    comparison: Comparison | None = None,
) -> GroupingResult | None:
    """Which tasks to train together (`multitune.final.grouping`): the candidates' groups
    trained over the seeds (to ship) and over the cross-fit's folds (to choose, out of fold;
    on validation without cross-fitting); test is measured for the report only."""
    if trained.affinity is None:
        return None
    oof = (
        _out_of_fold(stage, chosen, xfit, comparison)
        if xfit is not None and comparison is not None
        else None
    )
    with console.status("final: verifying task groupings") as status:
        result = verify_groupings(
            stage.params,
            stage.data,
            stage.units,
            trained,
            chosen.selection.multi,
            chosen.reference,
            stage.seeds,
            record=stage.ledger.record,
            reuse=stage.ledger.find,
            workers=stage.workers,
            on_done=lambda job: status.update(f"final: training {run_name(job, job.tasks or ())}"),
            out_of_fold=oof,
        )
    names = stage.names
    # The matrix as metrics (`affinity/<stepped>/<moved>`); the whole in reports/metrics.json.
    stage.run.log_metrics(
        {
            "affinity": {a: {b: float(result.affinity.loc[a, b]) for b in names} for a in names},
            "grouping_runs": sum(len(r) for r in result.group_runs.values()),
            "grouping_seconds": result.seconds,
        }
    )
    stage.run.log_params({"grouping": [list(g) for g in result.chosen.groups]})
    return result


def _compare(stage: _Stage, chosen: _Chosen, trained: Trained) -> Comparison:
    """The test split, read once (`compare_sides`)."""
    return compare_sides(stage.params, stage.data, stage.units, trained, chosen.reference)


@dataclass(frozen=True)
class _Shipped:
    run: SeedRun
    val_dm: float
    test_dm: float
    verdict: str


def _publish(
    stage: _Stage,
    chosen_sides: _Chosen,
    trained: Trained,
    comparison: Comparison,
    grouping: GroupingResult | None,
    method: MethodComparison | None = None,
) -> tuple[_Shipped, Any | None]:
    """Ship the chosen grouping: all in one (the multi-task seed with the best validation
    objective), or a model routing each task to its group's network (`_grouped`). The
    registry's gate ranks on validation and vetoes on the cross-fitted verdict: the test
    split never chooses (without cross-fitting, the test verdict still vetoes)."""
    params, names, multi = stage.params, stage.names, trained.multi
    if grouping is None or grouping.chosen.name == ALL_IN_ONE:
        scores = [objective(r.val_metrics, stage.types, trained.baseline_val) for r in multi]
        best = int(np.nanargmax(scores)) if np.isfinite(scores).any() else 0
        chosen, model_dir = multi[best], stage.model_dir("multi", None, multi[best].seed)
        measured, label = comparison, "all in one"
    else:
        chosen, model_dir = _grouped(stage, chosen_sides, trained, grouping)
        verified = grouping.chosen_verified
        measured = verified.test if verified is not None else comparison
        label = grouping.chosen.label
    val_dm = _safe_delta_m(chosen.val_metrics, trained.baseline_val)
    single_test = {t: mean_metrics(trained.single[t], t, "test") for t in names}
    test_dm = _safe_delta_m(chosen.test_metrics, single_test)
    word = gate_verdict(grouping, method, measured)
    not_converged = [r.run_id for r in trained.all_runs() if r.converged is False]
    stage.run.log_metrics(
        {
            "delta_m": comparison.delta_m,
            "delta_m_ci_low": comparison.delta_m_low,
            "delta_m_ci_high": comparison.delta_m_high,
            "registered_val_delta_m": val_dm,
            "registered_test_delta_m": test_dm,
            "not_converged_runs": len(not_converged),
        }
    )
    shipped = _Shipped(chosen, val_dm, test_dm, word)
    if not params.final.register_model:
        return shipped, None
    from multitune.final.publish import publish, version_description

    registration = publish(
        params,
        stage.paths,
        model_dir,
        chosen,
        baseline_val=trained.baseline_val,
        verdict=word,
        phash=params_hash(params),
        dhash=stage.dhash,
        tags={
            **stage.tags,
            "grouping": label,
            "test_delta_m": f"{test_dm:.6g}",
            "delta_m": f"{measured.delta_m:.6g}",
            "delta_m_ci": f"[{measured.delta_m_low:.6g}, {measured.delta_m_high:.6g}]",
            **(
                {
                    "method_delta_m": f"{method.delta_m.delta:.6g}",
                    "method_delta_m_ci": f"[{method.delta_m.low:.6g}, {method.delta_m.high:.6g}]",
                }
                if method is not None
                else {}
            ),
        },
        description=version_description(
            chosen, val_dm, test_dm, word, measured, stage.dhash, stage.tags, grouping=label
        ),
    )
    return shipped, registration


def gate_verdict(
    grouping: GroupingResult | None, method: MethodComparison | None, test: Comparison
) -> Verdict:
    """The verdict the registry's gate vetoes on: the cross-fitted one (of the shipped
    grouping against each alone, or of all in one), never a test-split figure. Each alone
    ships the single-task sides themselves ("no clear difference"). Only with cross-fitting
    off does the test split's verdict stand in (`test`), as it did before cross-fitting."""
    verified = grouping.chosen_verified if grouping is not None else None
    if grouping is not None and verified is None:
        return "no clear difference"
    if verified is not None and verified.method is not None:
        return verified.method.verdict
    if method is not None:
        return method.verdict
    word, _ = overall_verdict(test, task_verdicts(test))
    return word


def _grouped(
    stage: _Stage, chosen: _Chosen, trained: Trained, grouping: GroupingResult
) -> tuple[SeedRun, Path]:
    """The grouping's served model: per group, the seed with the best validation objective
    of its network (a one-task group: its single-task side, the linear fit where chosen).

    Returns:
        A record of the composed model (its validation metrics are what the gate scores; it
        is logged on a `grouping` child run) and the grouped model's directory.
    """
    from multitune.tracking.pyfunc import GroupMember, stage_grouped

    members, parts = [], []
    for g in grouping.chosen.groups:
        types = {t: stage.types[t] for t in g}
        if len(g) == 1 and trained.sides[g[0]].side == "linear" and chosen.reference:
            source = chosen.reference.save(g[0], stage.tmp / "linear" / g[0])
            members.append(GroupMember(g, "linear", source))
            parts.append(trained.single[g[0]][0])
            continue
        runs, kind = (
            (trained.network[g[0]], "single")
            if len(g) == 1
            else (grouping.group_runs[g], GROUP_KIND)
        )
        baseline = trained.baseline_val if len(g) > 1 else None
        scores = [objective(r.val_metrics, types, baseline) for r in runs]
        best = runs[int(np.nanargmax(scores)) if np.isfinite(scores).any() else 0]
        members.append(GroupMember(g, "network", stage.model_dir(kind, g, best.seed)))
        parts.append(best)
    name = f"grouping-{'-'.join('+'.join(g) for g in grouping.chosen.groups)}"
    run_id = stage.ledger.child(
        name,
        name,
        {**stage.tags, "kind": "grouping", "grouping": grouping.chosen.label},
        lambda handle: handle.log_params({"groups": [list(g) for g in grouping.chosen.groups]}),
    )
    composed = merged(
        list(zip(grouping.chosen.groups, parts, strict=True)),
        run_id=run_id,
        seed=parts[0].seed,
    )
    return composed, stage_grouped(stage.tmp / "grouped-model", members)


def _report(
    stage: _Stage,
    chosen: _Chosen,
    trained: Trained,
    comparison: Comparison,
    shipped: _Shipped,
    registration: Any | None,
    tracking: Any,
    grouping: GroupingResult | None = None,
    method: MethodComparison | None = None,
    xfit: CrossFit | None = None,
) -> ReportInputs:
    """Write `reports/` and log it, with the sweep's outputs, on the stage's run."""
    params, paths, cfg, names = stage.params, stage.paths, stage.params.final, stage.names
    ref, sel = chosen.reference, chosen.selection
    all_runs = trained.all_runs()
    # Every run of the stage names the data it trained on and was scored on.
    log_inputs(
        [stage.run.run_id, *(r.run_id for r in all_runs)]
        + [r.run_id for r in chosen.reference_runs],
        split_inputs(
            paths.data / "dataset.parquet",
            paths.data / "splits.parquet",
            {split: len(index) for split, index in stage.data.splits.items()},
            _data_name(params.data.source),
        ),
    )
    sweep = sweep_view(inputs.read_trials(paths.sweep), names, stage.types, cfg)
    meta = provenance(
        stage.run.run_id,
        tracking,
        stage.tags,
        params_hash(params),
        stage.dhash,
        shipped=f"{shipped.run.run_id} (seed {shipped.run.seed}, chosen on validation: val Δm "
        f"{shipped.val_dm:+.2f}%; test Δm {shipped.test_dm:+.2f}%)",
        selection=sel,
        sides=trained.sides,
        registration=registration,
    )
    networks = [r for t in names for r in trained.network[t]]
    group_runs = [r for rs in (grouping.group_runs if grouping else {}).values() for r in rs]
    report = ReportInputs(
        comparison=comparison,
        reference=ref.test if ref else {},
        runs=[
            RunRecord(
                r.run_id,
                r.kind,
                r.tasks,
                r.seed,
                r.epochs_run,
                steps=r.steps,
                best_step=r.best_step,
                converged=r.converged,
            )
            for r in [*all_runs, *group_runs]
        ]
        + chosen.reference_runs,
        curves=curves([*trained.multi, *networks], stage.types),
        trials=sweep.trials,
        objective=sweep.objective,
        top_trials=sweep.top,
        top_trials_note=sweep.top_note,
        importance=sweep.importance,
        importance_evaluator=cfg.importance,
        pareto_points=sweep.pareto,
        transfer=transfer_matrix(trained.transfer, names, stage.types)
        if trained.transfer
        else None,
        transfer_method=cfg.transfer.method if trained.transfer else "none",
        meta=meta,
        budgets=budgets(params, trained.multi, trained.network, sel),
        reference_chosen=ref.chosen if ref else {},
        grouping=_grouping_view(grouping, comparison) if grouping else None,
        scored_words=scored_words(scored_targets(stage.data), trained.multi[0]),
        method=method,
        method_train_rows=xfit.train_rows if xfit is not None else 0.0,
        winner_val_delta_m=_safe_delta_m(
            {t: mean_metrics(trained.multi, t, "val") for t in names}, trained.baseline_val
        ),
    )
    render(report, paths.reports)
    write_curves(report.curves, paths.reports / "curves")
    # The stage's run carries what it read and wrote: the report (figures inside), the
    # sweep's trials and its best config.
    stage.run.log_artifacts(paths.reports, "reports")
    for name in ("trials.parquet", "best.yaml"):
        if (paths.sweep / name).exists():
            stage.run.log_artifacts(paths.sweep / name, "sweep")
    return report


def _grouping_view(result: GroupingResult, comparison: Comparison) -> GroupingView:
    """What the report shows of the grouping (`multitune.report.grouping`)."""
    measured = {v.candidate.name: v for v in result.verified}
    candidates = [
        CandidateView(
            c.name,
            [list(g) for g in c.groups],
            c.affinity,
            measured[c.name].val if c.name in measured else None,
            measured[c.name].test if c.name in measured else None,
            _method_dm(measured[c.name].method) if c.name in measured else None,
        )
        for c in result.candidates
    ]
    primary = {r.name: r for r in comparison.rows if r.kind == "task" and r.in_family}
    return GroupingView(
        affinity=result.affinity,
        candidates=candidates,
        chosen=result.chosen.name,
        why=result.why,
        val_confidence=result.val_confidence,
        single={t: (r.metric, r.single_mean) for t, r in primary.items()},
        runs=sum(len(rs) for rs in result.group_runs.values()),
        seconds=result.seconds,
    )


def _method_dm(method: MethodComparison | None) -> MethodRow | None:
    return method.delta_m if method is not None else None


def _data_name(source: str) -> str:
    """A short name of the data for its MLflow datasets: the bundled set's, or the file's."""
    if source.startswith("builtin:"):
        return source.removeprefix("builtin:")
    return Path(source).stem
