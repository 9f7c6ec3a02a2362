"""The final stage: retrain the best configs over seeds, measure, report, register."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from multitune.config import Params
from multitune.config.final import FinalConfig
from multitune.console import console
from multitune.data.artifacts import read_units
from multitune.final import inputs
from multitune.final.context import Chosen, Stage, saved_model, training_on
from multitune.final.crossfit import (
    CrossFit,
    compose_groups,
    crossfit,
    crossfit_groups,
    method_comparison,
)
from multitune.final.grouping import (
    Candidate,
    GroupingResult,
    new_groups,
    verify_groupings,
)
from multitune.final.paths import FinalPaths
from multitune.final.progress import Progress, phase, reporting
from multitune.final.protocol import (
    Trained,
    compare_sides,
    train_sides,
)
from multitune.final.reference import ReferenceResult, fit_reference
from multitune.final.reporting import write_report
from multitune.final.resume import Ledger, attempt_tags, interrupted_attempt
from multitune.final.runs import (
    Trainings,
    run_name,
)
from multitune.final.selection import select
from multitune.final.shipping import ship
from multitune.report import (
    Comparison,
    RunRecord,
    summary_text,
)
from multitune.report.crossfit import MethodComparison
from multitune.tracking import (
    base_tags,
    connect,
    data_hash,
    stage_run,
)
from multitune.training import TrainingData

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinalOutcome:
    """What the stage produced."""

    summary: str
    delta_m: float
    registration: Any | None
    run_id: str


def _workers(cfg: FinalConfig) -> int:
    if cfg.workers is not None:
        return cfg.workers
    return max(1, (os.cpu_count() or 1) // (cfg.threads or 1))


def run_final(params: Params, paths: FinalPaths, device: str | None = None) -> FinalOutcome:
    """Run the final stage and write `paths.reports` (see DESIGN.md, stage `final`).

    The protocol, one phase each: `_choose` (the linear reference; each side's config, by
    cross-validation for small tasks), `_train` (each side's config over seeds), `_group`
    (which tasks to train together: affinity, candidates verified by retraining), `_compare`
    (the test split, read once: bootstrap intervals and verdicts), `ship` (log and
    register the shipped model) and `write_report`.

    Args:
        params: The validated params.
        paths: Inputs and outputs.
        device: Training device override (default: `train.device`).

    Returns:
        The printed summary, the overall Δm, the registration and the stage's run id.
    """
    if params.final.threads is not None:
        torch.set_num_threads(params.final.threads)
    tracking = connect(params.mlflow, paths.root)
    data = TrainingData.from_files(paths.data, params, device)
    with _opened(params, paths, data) as stage:
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
        shipped, registration = ship(stage, chosen, trained, comparison, grouping, method)
        report = write_report(
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
        stage.run.log_metrics(
            {"runs_trained": stage.ledger.trained, "runs_reused": stage.ledger.reused}
        )
    return FinalOutcome(summary_text(report), comparison.delta_m, registration, stage.run.run_id)


@contextlib.contextmanager
def _opened(params: Params, paths: FinalPaths, data: TrainingData) -> Iterator[Stage]:
    """The stage's MLflow run (the interrupted one, resumed, if any), its ledger of finished
    trainings, its progress lines and where its trainings run, for the phases to share."""
    cfg = params.final
    data_files = [
        paths.data / "dataset.parquet",
        paths.data / "splits.parquet",
        paths.data / "features",
    ]
    dhash = data_hash(data_files)
    attempt = attempt_tags(params, dhash, paths.root)
    interrupted = interrupted_attempt(attempt)
    with (
        training_on(params, data),
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
        ledger = Ledger.open(run.run_id, tags, saved_model(Path(tmp)))
        if interrupted is not None:
            _say(
                f"final: resuming the interrupted run {interrupted}: "
                f"{len(ledger.finished)} finished run(s) are read back, not retrained"
            )
        yield Stage(
            params=params,
            paths=paths,
            data=data,
            units=read_units(paths.data / "splits.parquet", data.ids),
            seeds=[cfg.seed_base + i for i in range(cfg.seeds)],
            tags=tags,
            dhash=dhash,
            run=run,
            tmp=Path(tmp),
            ledger=ledger,
            trainings=Trainings(_workers(cfg), cfg.threads, ledger.record, ledger.find),
        )


def _say(line: str) -> None:
    console.print(line, markup=False, soft_wrap=True)


def _choose(stage: Stage) -> Chosen:
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
            trainings=stage.trainings,
        )
    stage.run.log_params({"small_tasks": selection.small})
    stage.run.log_metrics(
        {"selection_cv_runs": selection.cv_runs, "selection_cv_seconds": selection.cv_seconds}
    )
    return Chosen(ref, reference_runs, selection)


def _train(stage: Stage, chosen: Chosen) -> Trained:
    """Each side's config over seeds, every run logged as a child run of the stage's."""
    n = len(stage.names) * len(stage.seeds)
    with console.status(f"final: {n} single-task runs, then the multi-task runs") as status:
        trained = train_sides(
            stage.params,
            stage.data,
            chosen.selection,
            chosen.reference,
            stage.seeds,
            trainings=stage.trainings,
            reference_run_id=chosen.reference_runs[0].run_id if chosen.reference_runs else "",
            on_done=lambda job: status.update(f"final: training {run_name(job, job.tasks or ())}"),
            affinity_every=_affinity_every(stage),
        )
    stage.run.log_params({"single_side": {t: c.side for t, c in trained.sides.items()}})
    return trained


def _affinity_every(stage: Stage) -> int | None:
    grouping = stage.params.final.grouping
    return grouping.every if grouping.method == "tag" and len(stage.names) >= 2 else None


def _crossfit(stage: Stage, chosen: Chosen, trained: Trained) -> CrossFit | None:
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
            trainings=stage.trainings,
            on_done=lambda job: status.update(
                f"final: cross-fitting, {job.kind} {'+'.join(job.tasks or ('all',))} "
                f"fold {job.key[-1] + 1}/{n}"
            ),
        )
    stage.run.log_metrics({"crossfit_runs": result.runs, "crossfit_seconds": result.seconds})
    return result


def _method(
    stage: Stage, xfit: CrossFit | None, comparison: Comparison
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


def _out_of_fold(stage: Stage, chosen: Chosen, xfit: CrossFit, comparison: Comparison) -> Any:
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
                trainings=stage.trainings,
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
    stage: Stage,
    chosen: Chosen,
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
            trainings=stage.trainings,
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


def _compare(stage: Stage, chosen: Chosen, trained: Trained) -> Comparison:
    """The test split, read once (`compare_sides`)."""
    return compare_sides(stage.params, stage.data, stage.units, trained, chosen.reference)
