"""What the final stage's report states besides the comparison: provenance, budgets, curves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

import multitune
from multitune.config import Params
from multitune.final.scoring import SeedRun
from multitune.final.selection import Selection, SideChoice
from multitune.training.metrics import primary_metric


def curves(records: list[SeedRun], types: dict[str, str]) -> pd.DataFrame:
    """Long table of validation curves (task, metric, kind, seed, epoch, value)."""
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


def budgets(
    params: Params, multi: list[SeedRun], single: dict[str, list[SeedRun]], sel: Selection
) -> dict:
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
        "choice for small tasks": (
            f"{sel.folds}-fold CV over train+val for {', '.join(sel.small)}: "
            f"{sel.cv_runs} network runs and the linear fits, {sel.cv_seconds:.0f} s"
            if sel.small
            else "on validation (no task has fewer labelled val rows than "
            f"{params.final.selection.max_val_rows})"
        ),
    }


def provenance(
    run_id: str,
    tracking: Any,
    tags: Mapping[str, str],
    phash: str,
    dhash: str,
    *,
    shipped: str,
    selection: Selection,
    sides: Mapping[str, SideChoice],
    registration: Any | None,
) -> dict[str, Any]:
    """The report's provenance table: where the runs are, what chose each side, what shipped."""
    meta: dict[str, Any] = {
        "final stage run": run_id,
        "tracking": tracking.uri,
        "experiment": tracking.experiment_name,
        "git commit": tags.get("git_commit", ""),
        "params hash": phash,
        "data hash": dhash,
        "multitune": multitune.__version__,
        "shipped multi-task run": shipped,
        "multi-task config chosen by": selection.multi_how,
    }
    for t, c in sides.items():
        scores = ", ".join(f"{k} {v:.4g}" for k, v in c.scores.items())
        meta[f"single-task side of {t}"] = f"{c.side} (by {c.how}: {scores})"
    if selection.notes:
        meta["selection notes"] = " ".join(selection.notes)
    if registration is not None:
        meta["registered model"] = (
            f"{registration.name} v{registration.version} ({registration.outcome}; "
            f"{registration.alias} -> v{registration.holder_version}): {registration.gate}"
        )
    return meta
