"""Phase `report`: `reports/` written from every phase's results, and logged on the stage's
run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from multitune.final import inputs
from multitune.final.context import Chosen, Stage, safe_delta_m
from multitune.final.crossfit import (
    CrossFit,
)
from multitune.final.grouping import (
    GroupingResult,
)
from multitune.final.protocol import (
    Trained,
    scored_targets,
)
from multitune.final.report_inputs import budgets, curves, provenance
from multitune.final.runs import (
    mean_metrics,
)
from multitune.final.scoring import SeedRun, scored_words
from multitune.final.shipping import Shipped
from multitune.final.sweep_view import sweep_view
from multitune.final.transfer import transfer_matrix
from multitune.report import (
    Comparison,
    ReportInputs,
    RunRecord,
    render,
    write_curves,
)
from multitune.report.crossfit import MethodComparison, MethodRow
from multitune.report.grouping import CandidateView, GroupingView
from multitune.tracking import (
    params_hash,
)
from multitune.tracking.lineage import log_inputs, split_inputs


def write_report(
    stage: Stage,
    chosen: Chosen,
    trained: Trained,
    comparison: Comparison,
    shipped: Shipped,
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
    _name_inputs(stage, all_runs, chosen.reference_runs)
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
        runs=[*_records([*all_runs, *group_runs]), *chosen.reference_runs],
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
        winner_val_delta_m=safe_delta_m(
            {t: mean_metrics(trained.multi, t, "val") for t in names}, trained.baseline_val
        ),
    )
    _write(stage, report)
    return report


def _name_inputs(stage: Stage, runs: list[SeedRun], reference_runs: list[RunRecord]) -> None:
    """Every run of the stage names the data it trained on and was scored on."""
    paths = stage.paths
    log_inputs(
        [stage.run.run_id, *(r.run_id for r in runs), *(r.run_id for r in reference_runs)],
        split_inputs(
            paths.data / "dataset.parquet",
            paths.data / "splits.parquet",
            {split: len(index) for split, index in stage.data.splits.items()},
            _data_name(stage.params.data.source),
        ),
    )


def _records(runs: list[SeedRun]) -> list[RunRecord]:
    """The report's line for each training."""
    return [
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
        for r in runs
    ]


def _write(stage: Stage, report: ReportInputs) -> None:
    """`reports/` on disk, and on the stage's run with what it read: the report (figures
    inside), the sweep's trials and its best config."""
    reports, sweep = stage.paths.reports, stage.paths.sweep
    render(report, reports)
    write_curves(report.curves, reports / "curves")
    stage.run.log_artifacts(reports, "reports")
    for name in ("trials.parquet", "best.yaml"):
        if (sweep / name).exists():
            stage.run.log_artifacts(sweep / name, "sweep")


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
