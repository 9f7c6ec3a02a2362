"""The final stage: retrain the best configs over seeds, measure, report, register."""

from __future__ import annotations

import logging
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
from multitune.console import console
from multitune.final import inputs
from multitune.final.paths import FinalPaths
from multitune.final.reference import reference_scores
from multitune.final.runs import mean_val, train_logged
from multitune.final.scoring import SeedRun, SplitTargets, group_rows, task_rows
from multitune.final.sweep_view import sweep_view
from multitune.final.transfer import pairwise_transfer
from multitune.report import ReportInputs, RunRecord, compare, render, summary_text, write_curves
from multitune.tracking import (
    base_tags,
    connect,
    data_hash,
    params_hash,
    stage_run,
    start_child,
)
from multitune.training import TrainingData, TrainResult
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


def _mean_metrics(records: list[SeedRun], task: str) -> dict[str, float]:
    keys = set.intersection(*(set(r.test_metrics.get(task, {})) for r in records))
    return {k: float(np.mean([r.test_metrics[task][k] for r in records])) for k in keys}


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

    with (
        stage_run("final", params, project_root=paths.root, data_paths=data_files) as run,
        tempfile.TemporaryDirectory(prefix="multitune-final-") as tmp,
    ):
        single: dict[str, list[SeedRun]] = {}
        baseline_val: dict[str, dict[str, float]] = {}
        with console.status("final: single-task runs") as status:
            for t in names:
                results: list[TrainResult] = []
                for s in seeds:
                    status.update(f"final: single-task {t}, seed {s}")
                    rec, res = train_logged(
                        single_params[t],
                        data,
                        parent_run_id=run.run_id,
                        kind="single",
                        tasks=[t],
                        seed=s,
                        tags=tags,
                    )
                    single.setdefault(t, []).append(rec)
                    results.append(res)
                baseline_val[t] = mean_val(results, t)
            multi: list[SeedRun] = []
            scores: list[float] = []
            for s in seeds:
                status.update(f"final: multi-task, seed {s}")
                rec, res = train_logged(
                    multi_params,
                    data,
                    parent_run_id=run.run_id,
                    kind="multi",
                    tasks=None,
                    seed=s,
                    tags=tags,
                    baseline=baseline_val,
                    save_to=Path(tmp) / f"model-{s}",
                )
                multi.append(rec)
                scores.append(objective(res.metrics["val"], types, baseline_val))
            transfer: pd.DataFrame | None = None
            transfer_runs: list[SeedRun] = []
            if cfg.transfer.method == "pairwise" and 2 <= len(names) <= cfg.transfer.max_tasks:
                status.update("final: pairwise transfer runs")
                transfer, transfer_runs = pairwise_transfer(
                    multi_params,
                    data,
                    cfg.transfer,
                    parent_run_id=run.run_id,
                    seed=seeds[0],
                    tags=tags,
                )
            reference: dict[str, dict[str, float]] = {}
            reference_runs: list[RunRecord] = []
            if cfg.reference.enabled:
                status.update("final: logistic-regression reference")
                reference = reference_scores(data, cfg.reference)
                ref_run = start_child(
                    run.run_id, "reference-logreg", {**tags, "kind": "reference"}
                )
                ref_run.log_params(cfg.reference)
                ref_run.log_metrics({"test": reference})
                ref_run.end()
                reference_runs.append(RunRecord(ref_run.run_id, "reference", tuple(names), None))

        targets = _targets(data)
        rows = task_rows(targets, multi, single)
        rows += group_rows(params.task_groups, targets, multi, single)
        comparison = compare(
            rows,
            len(data.splits["test"]),
            delta_m_percent,
            samples=cfg.bootstrap_samples,
            confidence=cfg.confidence,
            seed=cfg.seed_base,
        )

        # The model to ship: the multi-task seed with the best validation objective.
        best = int(np.nanargmax(scores)) if np.isfinite(scores).any() else 0
        chosen = multi[best]
        single_test = {t: _mean_metrics(single[t], t) for t in names}
        chosen_dm = delta_m_percent(chosen.test_metrics, single_test)
        run.log_metrics(
            {
                "delta_m": comparison.delta_m,
                "delta_m_ci_low": comparison.delta_m_low,
                "delta_m_ci_high": comparison.delta_m_high,
                "registered_delta_m": chosen_dm,
            }
        )
        registration = None
        if cfg.register_model:
            from multitune.final.publish import publish

            registration = publish(
                params,
                paths,
                Path(tmp) / f"model-{chosen.seed}",
                chosen,
                chosen_dm,
                phash=params_hash(params),
                dhash=dhash,
                tags=tags,
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
            "shipped multi-task run": f"{chosen.run_id} (seed {chosen.seed}, test Δm "
            f"{chosen_dm:+.2f}%)",
        }
        if registration is not None:
            meta["registered model"] = (
                f"{registration.name} v{registration.version} ({registration.outcome}; "
                f"{registration.alias} -> v{registration.holder_version})"
            )
        all_runs = [*multi, *(r for t in names for r in single[t]), *transfer_runs]
        report = ReportInputs(
            comparison=comparison,
            reference=reference,
            runs=[RunRecord(r.run_id, r.kind, r.tasks, r.seed, r.epochs_run) for r in all_runs]
            + reference_runs,
            curves=_curves([*multi, *(r for t in names for r in single[t])], types),
            trials=sweep.trials,
            objective=sweep.objective,
            top_trials=sweep.top,
            importance=sweep.importance,
            importance_evaluator=cfg.importance,
            pareto_points=sweep.pareto,
            transfer=transfer,
            transfer_method=cfg.transfer.method if transfer is not None else "none",
            meta=meta,
        )
        render(report, paths.reports)
        write_curves(report.curves, paths.reports / "curves")
    summary = summary_text(report)
    return FinalOutcome(summary, comparison.delta_m, registration, run.run_id)


def clean_reports(reports: Path) -> None:
    """Remove a previous report (DVC removes outs before a run; this covers direct calls)."""
    if reports.exists():
        shutil.rmtree(reports)
