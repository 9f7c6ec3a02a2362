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
import pandas as pd
import torch

import multitune
from multitune.config import Params
from multitune.config.final import FinalConfig
from multitune.console import console
from multitune.final import inputs
from multitune.final.paths import FinalPaths
from multitune.final.reference import ReferenceResult, fit_reference
from multitune.final.runs import Fitted, RunJob, fit_all, log_run, mean_metrics, run_name
from multitune.final.scoring import SeedRun, SplitTargets, group_rows, task_rows
from multitune.final.sweep_view import sweep_view
from multitune.final.transfer import transfer_jobs, transfer_matrix
from multitune.report import (
    ReportInputs,
    RunRecord,
    compare,
    overall_verdict,
    render,
    summary_text,
    task_verdicts,
    write_curves,
)
from multitune.tracking import (
    base_tags,
    connect,
    data_hash,
    params_hash,
    stage_run,
    start_child,
)
from multitune.tracking.lineage import log_inputs, split_inputs
from multitune.training import TrainingData
from multitune.training.metrics import delta_m, objective, primary_metric

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinalOutcome:
    """What the stage produced."""

    summary: str
    delta_m: float
    registration: Any | None
    run_id: str


def delta_m_percent(mt: Any, st: Any) -> float:
    """The training library's Δm (a fraction) in percent, as the report shows it."""
    return 100.0 * delta_m(mt, st)


def _safe_delta_m(mt: dict[str, dict[str, float]], st: dict[str, dict[str, float]]) -> float:
    """Δm (percent) over the tasks both sides score; NaN when none (e.g. no val labels)."""
    shared = {t: m for t, m in mt.items() if m and st.get(t)}
    try:
        return delta_m_percent(shared, {t: st[t] for t in shared}) if shared else float("nan")
    except ValueError:
        return float("nan")


def _curves(records: list[SeedRun], types: dict[str, str]) -> pd.DataFrame:
    rows = []
    for r in records:
        for h in r.history:
            val = h.get("val", {})
            for task in r.tasks:
                metric = primary_metric(types[task])
                value = val.get(task, {}).get(metric) if isinstance(val, dict) else None
                if value is not None:
                    rows.append(
                        {
                            "task": task,
                            "metric": metric,
                            "kind": r.kind,
                            "seed": r.seed,
                            "epoch": int(h["epoch"]),  # type: ignore[call-overload]
                            "value": float(value),
                        }
                    )
    return pd.DataFrame(rows, columns=["task", "metric", "kind", "seed", "epoch", "value"])


def _targets(data: TrainingData) -> dict[str, SplitTargets]:
    te = data.splits["test"]
    return {
        t.name: SplitTargets(
            t, data.targets[t.name][te].cpu().numpy(), data.labelled[t.name][te].cpu().numpy()
        )
        for t in data.tasks
    }


def _budgets(params: Params, multi: list[SeedRun], single: dict[str, list[SeedRun]]) -> dict:
    """The search and training effort of each side, as the report states it."""
    b, sw = params.baselines, params.sweep

    def epochs(cfg_epochs: int | None) -> int:
        return cfg_epochs if cfg_epochs is not None else params.train.epochs

    def steps(runs: list[SeedRun]) -> str:
        values = [r.steps for r in runs if r.steps is not None]
        return f"{min(values)} to {max(values)}" if values else ""

    return {
        "multi-task search": f"{sw.num_samples} trials (sweep)",
        "single-task search": f"{b.trials_per_task(sw)} trials per task (baselines)",
        "trial epoch cap": f"multi {epochs(sw.epochs)}, single {epochs(b.epochs)} epochs",
        "early stopping (search)": f"sweep {sw.scheduler.name}, baselines {b.scheduler.name}",
        "epoch": (
            f"{params.train.epoch_steps} optimizer steps, then one validation pass"
            if params.train.epoch_steps
            else "one pass over the run's labelled train rows, then one validation pass"
        ),
        "patience": f"{params.train.patience} epochs without a better validation score",
        "final steps trained (multi-task)": steps(multi),
        "final steps trained (single-task)": steps([r for rs in single.values() for r in rs]),
    }


def _workers(cfg: FinalConfig) -> int:
    if cfg.workers is not None:
        return cfg.workers
    return max(1, (os.cpu_count() or 1) // (cfg.threads or 1))


def run_final(params: Params, paths: FinalPaths, device: str | None = None) -> FinalOutcome:
    """Run the final stage and write `paths.reports` (see DESIGN.md, stage `final`).

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
    names = data.task_names
    types = {t.name: t.type for t in data.tasks}
    multi_params = inputs.best_multitask(params, paths.sweep)
    single_params = {t: inputs.best_single(params, paths.baselines, t) for t in names}
    seeds = [cfg.seed_base + i for i in range(cfg.seeds)]
    data_files = [
        paths.data / "dataset.parquet",
        paths.data / "splits.parquet",
        paths.data / "features",
    ]
    dhash = data_hash(data_files)
    tags = base_tags("final", params, project_root=paths.root, data_hash=dhash)
    workers = _workers(cfg)
    with_transfer = cfg.transfer.method == "pairwise" and 2 <= len(names) <= cfg.transfer.max_tasks

    with (
        stage_run("final", params, project_root=paths.root, data_paths=data_files) as run,
        tempfile.TemporaryDirectory(prefix="multitune-final-") as tmp,
    ):

        def log(job: RunJob, fitted: Fitted, save: bool = False) -> SeedRun:
            save_to = Path(tmp) / f"model-{job.seed}" if save else None
            return log_run(job, fitted, parent_run_id=run.run_id, tags=tags, save_to=save_to)

        # Single-task runs (and the transfer runs, which need nothing else) first: the
        # multi-task runs stop early on Δm against the single-task validation scores.
        first = [
            RunJob(("single", t, s), single_params[t], "single", (t,), s)
            for t in names
            for s in seeds
        ]
        if with_transfer:
            first += transfer_jobs(multi_params, names, cfg.transfer, seeds[0])
        single: dict[str, list[SeedRun]] = {t: [] for t in names}
        transfer_runs: dict[tuple[str, ...], SeedRun] = {}
        with console.status(f"final: {len(first)} single-task and transfer runs") as status:
            for job, fitted in fit_all(first, data, workers=workers, threads=cfg.threads):
                status.update(f"final: done {run_name(job, job.tasks or ())}")
                rec = log(job, fitted)
                if job.kind == "single":
                    single[job.key[1]].append(rec)
                else:
                    transfer_runs[tuple(job.tasks or ())] = rec
        for t in names:  # seed order, whatever order the workers finished in
            single[t].sort(key=lambda r: r.seed)
        baseline_val = {t: mean_metrics(single[t], t, "val") for t in names}

        multi_jobs = [
            RunJob(("multi", s), multi_params, "multi", None, s, baseline_val) for s in seeds
        ]
        multi: list[SeedRun] = []
        with console.status(f"final: {len(multi_jobs)} multi-task runs"):
            for job, fitted in fit_all(multi_jobs, data, workers=workers, threads=cfg.threads):
                multi.append(log(job, fitted, save=True))
        multi.sort(key=lambda r: r.seed)
        scores = [objective(r.val_metrics, types, baseline_val) for r in multi]
        transfer = transfer_matrix(transfer_runs, names, types) if with_transfer else None

        ref: ReferenceResult | None = None
        reference_runs: list[RunRecord] = []
        if cfg.reference.enabled:
            with console.status("final: linear reference (tuned on validation)"):
                ref = fit_reference(data, cfg.reference)
            ref_run = start_child(run.run_id, "reference-linear", {**tags, "kind": "reference"})
            ref_run.log_params(
                {"grid": cfg.reference.model_dump(mode="json"), "chosen": ref.chosen}
            )
            ref_run.log_metrics({"val": ref.val, "test": ref.test})
            ref_run.end()
            reference_runs.append(RunRecord(ref_run.run_id, "reference", tuple(names), None))

        targets = _targets(data)
        rows = task_rows(targets, multi, single, reference=ref.test_pred if ref else None)
        rows += group_rows(params.task_groups, targets, multi, single)
        comparison = compare(
            rows,
            len(data.splits["test"]),
            delta_m_percent,
            samples=cfg.bootstrap_samples,
            confidence=cfg.confidence,
            seed=cfg.seed_base,
            floor_tolerance=cfg.reference.tolerance,
        )

        # The model to ship: the multi-task seed with the best validation objective. The
        # registry's gate is its validation Δm too: the test split never chooses.
        best = int(np.nanargmax(scores)) if np.isfinite(scores).any() else 0
        chosen = multi[best]
        chosen_val_dm = _safe_delta_m(chosen.val_metrics, baseline_val)
        single_test = {t: mean_metrics(single[t], t, "test") for t in names}
        chosen_test_dm = _safe_delta_m(chosen.test_metrics, single_test)
        not_converged = [
            r.run_id for r in [*multi, *single_run_list(single, names)] if r.converged is False
        ]
        run.log_metrics(
            {
                "delta_m": comparison.delta_m,
                "delta_m_ci_low": comparison.delta_m_low,
                "delta_m_ci_high": comparison.delta_m_high,
                "registered_val_delta_m": chosen_val_dm,
                "registered_test_delta_m": chosen_test_dm,
                "not_converged_runs": len(not_converged),
            }
        )
        # Every run of the stage names the data it trained on and was scored on.
        log_inputs(
            [run.run_id, *(r.run_id for r in _all_runs(multi, single, names, transfer_runs))]
            + [r.run_id for r in reference_runs],
            split_inputs(
                paths.data / "dataset.parquet",
                paths.data / "splits.parquet",
                {split: len(index) for split, index in data.splits.items()},
                _data_name(params.data.source),
            ),
        )
        word, _ = overall_verdict(comparison, task_verdicts(comparison))
        registration = None
        if cfg.register_model:
            from multitune.final.publish import publish, version_description

            registration = publish(
                params,
                paths,
                Path(tmp) / f"model-{chosen.seed}",
                chosen,
                chosen_val_dm,
                phash=params_hash(params),
                dhash=dhash,
                tags={
                    **tags,
                    "test_delta_m": f"{chosen_test_dm:.6g}",
                    "verdict": word,
                    "delta_m": f"{comparison.delta_m:.6g}",
                    "delta_m_ci": f"[{comparison.delta_m_low:.6g}, {comparison.delta_m_high:.6g}]",
                },
                description=version_description(
                    chosen, chosen_val_dm, chosen_test_dm, word, comparison, dhash, tags
                ),
            )

        sweep = sweep_view(inputs.read_trials(paths.sweep), names, types, cfg)
        meta: dict[str, Any] = {
            "final stage run": run.run_id,
            "tracking": tracking.uri,
            "experiment": tracking.experiment_name,
            "git commit": tags.get("git_commit", ""),
            "params hash": params_hash(params),
            "data hash": dhash,
            "multitune": multitune.__version__,
            "shipped multi-task run": f"{chosen.run_id} (seed {chosen.seed}, chosen on "
            f"validation: val Δm {chosen_val_dm:+.2f}%; test Δm {chosen_test_dm:+.2f}%)",
        }
        if registration is not None:
            meta["registered model"] = (
                f"{registration.name} v{registration.version} ({registration.outcome} on "
                f"validation Δm; {registration.alias} -> v{registration.holder_version})"
            )
        all_runs = _all_runs(multi, single, names, transfer_runs)
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
            + reference_runs,
            curves=_curves([*multi, *single_run_list(single, names)], types),
            trials=sweep.trials,
            objective=sweep.objective,
            top_trials=sweep.top,
            importance=sweep.importance,
            importance_evaluator=cfg.importance,
            pareto_points=sweep.pareto,
            transfer=transfer,
            transfer_method=cfg.transfer.method if transfer is not None else "none",
            meta=meta,
            budgets=_budgets(params, multi, single),
            reference_chosen=ref.chosen if ref else {},
        )
        render(report, paths.reports)
        write_curves(report.curves, paths.reports / "curves")
        # The stage's run carries what it read and wrote: the report (figures inside), the
        # sweep's trials and its best config.
        run.log_artifacts(paths.reports, "reports")
        for name in ("trials.parquet", "best.yaml"):
            if (paths.sweep / name).exists():
                run.log_artifacts(paths.sweep / name, "sweep")
    summary = summary_text(report)
    return FinalOutcome(summary, comparison.delta_m, registration, run.run_id)


def _all_runs(
    multi: list[SeedRun],
    single: dict[str, list[SeedRun]],
    names: list[str],
    transfer: dict[tuple[str, ...], SeedRun],
) -> list[SeedRun]:
    return [*multi, *single_run_list(single, names), *transfer.values()]


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
