"""The final stage: retrain the best configs over seeds, measure, report, register."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
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
from multitune.final.paths import FinalPaths
from multitune.final.protocol import Trained, compare_sides, delta_m_percent, train_sides
from multitune.final.reference import ReferenceResult, fit_reference
from multitune.final.report_inputs import budgets, curves, provenance
from multitune.final.runs import Fitted, RunJob, log_run, mean_metrics, run_name
from multitune.final.scoring import SeedRun
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
from multitune.tracking import base_tags, connect, data_hash, params_hash, stage_run, start_child
from multitune.tracking.lineage import log_inputs, split_inputs
from multitune.training import TrainingData
from multitune.training.metrics import objective

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
    """What every phase reads: the params, data, seeds and the stage's MLflow run."""

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

    @property
    def names(self) -> list[str]:
        return self.data.task_names

    @property
    def types(self) -> dict[str, str]:
        return {t.name: t.type for t in self.data.tasks}

    def log(self, job: RunJob, fitted: Fitted) -> SeedRun:
        """Log a finished run as a child run; a multi-task run's model is saved to publish."""
        save_to = self.tmp / f"model-{job.seed}" if job.kind == "multi" else None
        return log_run(job, fitted, parent_run_id=self.run.run_id, tags=self.tags, save_to=save_to)


@dataclass(frozen=True)
class _Chosen:
    """Phase `choose`: the linear reference and each side's config."""

    reference: ReferenceResult | None
    reference_runs: list[RunRecord]
    selection: Selection


def run_final(params: Params, paths: FinalPaths, device: str | None = None) -> FinalOutcome:
    """Run the final stage and write `paths.reports` (see DESIGN.md, stage `final`).

    The protocol, one phase each: `_choose` (the linear reference; each side's config, by
    cross-validation for small tasks), `_train` (each side's config over seeds), `_compare`
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
    with (
        stage_run("final", params, project_root=paths.root, data_paths=data_files) as run,
        tempfile.TemporaryDirectory(prefix="multitune-final-") as tmp,
    ):
        stage = _Stage(
            params=params,
            paths=paths,
            data=data,
            units=read_units(paths.data / "splits.parquet", data.ids),
            seeds=[cfg.seed_base + i for i in range(cfg.seeds)],
            tags=base_tags("final", params, project_root=paths.root, data_hash=dhash),
            dhash=dhash,
            workers=_workers(cfg),
            run=run,
            tmp=Path(tmp),
        )
        chosen = _choose(stage)
        trained = _train(stage, chosen)
        comparison = _compare(stage, chosen, trained)
        shipped, registration = _publish(stage, trained, comparison)
        report = _report(stage, chosen, trained, comparison, shipped, registration, tracking)
    summary = summary_text(report)
    return FinalOutcome(summary, comparison.delta_m, registration, run.run_id)


def _choose(stage: _Stage) -> _Chosen:
    """The linear reference (tuned on validation), then each side's config (`selection`)."""
    params, paths, cfg = stage.params, stage.paths, stage.params.final
    ref: ReferenceResult | None = None
    reference_runs: list[RunRecord] = []
    if cfg.reference.enabled:
        with console.status("final: linear reference (tuned on validation)"):
            ref = fit_reference(stage.data, cfg.reference)
        ref_run = start_child(
            stage.run.run_id, "reference-linear", {**stage.tags, "kind": "reference"}
        )
        ref_run.log_params({"grid": cfg.reference.model_dump(mode="json"), "chosen": ref.chosen})
        ref_run.log_metrics({"val": ref.val, "test": ref.test})
        ref_run.end()
        reference_runs.append(RunRecord(ref_run.run_id, "reference", tuple(stage.names), None))
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
            record=stage.log,
            reference_run_id=chosen.reference_runs[0].run_id if chosen.reference_runs else "",
            workers=stage.workers,
            on_done=lambda job: status.update(f"final: training {run_name(job, job.tasks or ())}"),
        )
    stage.run.log_params({"single_side": {t: c.side for t, c in trained.sides.items()}})
    return trained


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
    stage: _Stage, trained: Trained, comparison: Comparison
) -> tuple[_Shipped, Any | None]:
    """The multi-task seed with the best validation objective is shipped; the registry's
    gate reads validation too: the test split never chooses."""
    params, names, multi = stage.params, stage.names, trained.multi
    scores = [objective(r.val_metrics, stage.types, trained.baseline_val) for r in multi]
    best = int(np.nanargmax(scores)) if np.isfinite(scores).any() else 0
    chosen = multi[best]
    val_dm = _safe_delta_m(chosen.val_metrics, trained.baseline_val)
    single_test = {t: mean_metrics(trained.single[t], t, "test") for t in names}
    test_dm = _safe_delta_m(chosen.test_metrics, single_test)
    word, _ = overall_verdict(comparison, task_verdicts(comparison))
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
        stage.tmp / f"model-{chosen.seed}",
        chosen,
        baseline_val=trained.baseline_val,
        verdict=word,
        phash=params_hash(params),
        dhash=stage.dhash,
        tags={
            **stage.tags,
            "test_delta_m": f"{test_dm:.6g}",
            "delta_m": f"{comparison.delta_m:.6g}",
            "delta_m_ci": f"[{comparison.delta_m_low:.6g}, {comparison.delta_m_high:.6g}]",
        },
        description=version_description(
            chosen, val_dm, test_dm, word, comparison, stage.dhash, stage.tags
        ),
    )
    return shipped, registration


def _report(
    stage: _Stage,
    chosen: _Chosen,
    trained: Trained,
    comparison: Comparison,
    shipped: _Shipped,
    registration: Any | None,
    tracking: Any,
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
            for r in all_runs
        ]
        + chosen.reference_runs,
        curves=curves([*trained.multi, *networks], stage.types),
        trials=sweep.trials,
        objective=sweep.objective,
        top_trials=sweep.top,
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


def _data_name(source: str) -> str:
    """A short name of the data for its MLflow datasets: the bundled set's, or the file's."""
    if source.startswith("builtin:"):
        return source.removeprefix("builtin:")
    return Path(source).stem


def single_run_list(single: dict[str, list[SeedRun]], names: list[str]) -> list[SeedRun]:
    """Every single-task run, task by task."""
    return [r for t in names for r in single[t]]


def clean_reports(reports: Path) -> None:
    """Remove a previous report (DVC removes outs before a run; this covers direct calls)."""
    if reports.exists():
        shutil.rmtree(reports)
