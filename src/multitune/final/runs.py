"""Train one config over seeds, each run an MLflow child run of the final stage's run."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from multitune.config import Params
from multitune.final.scoring import SeedRun
from multitune.tracking import RunHandle, start_child
from multitune.training import TrainingData, TrainResult, predict, train

logger = logging.getLogger(__name__)


def _history_metrics(history: Sequence[Mapping[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for h in history:
        metrics: dict[str, Any] = {"val": h.get("val", {}), "train_loss": h.get("train_loss", {})}
        if "objective" in h:
            metrics["objective"] = h["objective"]
        out.append((int(h["epoch"]), metrics))  # type: ignore[arg-type]
    return out


def train_logged(
    params: Params,
    data: TrainingData,
    *,
    parent_run_id: str,
    kind: str,
    tasks: list[str] | None,
    seed: int,
    tags: Mapping[str, str],
    baseline: Mapping[str, Mapping[str, float]] | None = None,
    save_to: Path | None = None,
) -> tuple[SeedRun, TrainResult]:
    """Train once, log params, per-epoch val metrics and final metrics to a child run.

    Args:
        params: The config to train (model/train sections already the best ones).
        data: All rows and tasks; `tasks` selects.
        parent_run_id: The final stage's run.
        kind: "multi", "single" or "transfer" (a tag, and the report's label).
        tasks: Tasks to train (None: all).
        seed: The seed.
        tags: Extra tags (stage, commit, hashes).
        baseline: Single-task val metrics for the Δm early-stopping objective.
        save_to: Save the trained model here.

    Returns:
        The run's record (with its test predictions) and the `TrainResult`.
    """
    names = list(tasks) if tasks is not None else [t.name for t in data.tasks]
    run_name = f"{kind}-{'+'.join(names) if kind != 'multi' else 'all'}-s{seed}"
    handle: RunHandle = start_child(
        parent_run_id,
        run_name,
        {**tags, "kind": kind, "tasks": ",".join(names), "seed": str(seed)},
    )
    try:
        handle.log_params(
            {
                "model": params.model.model_dump(mode="json"),
                "train": {**params.train.model_dump(mode="json"), "seed": seed},
                "tasks": names,
            }
        )
        result = train(params, data, tasks=tasks, seed=seed, baseline=baseline)
        for epoch, metrics in _history_metrics(result.history):
            handle.log_metrics(metrics, step=epoch)
        handle.log_metrics({split: result.metrics[split] for split in ("val", "test")})
        if result.group_metrics.get("test"):
            handle.log_metrics({"test_group": result.group_metrics["test"]})
        handle.log_metrics({"epochs_run": result.epochs_run, "best_epoch": result.best_epoch})
        if save_to is not None:
            result.save(save_to)
    except BaseException as err:
        handle.end("FAILED", error=f"{type(err).__name__}: {err}")
        raise
    handle.end()
    feats = data.inputs(data.splits["test"], result.model.token_modalities)
    test_pred = {k: np.asarray(v) for k, v in predict(result.model, feats).items()}
    record = SeedRun(
        run_id=handle.run_id,
        kind=kind,
        seed=seed,
        tasks=tuple(names),
        test_pred=test_pred,
        history=list(result.history),
        epochs_run=result.epochs_run,
        test_metrics=result.metrics["test"],
    )
    return record, result


def mean_val(results: Sequence[TrainResult], task: str) -> dict[str, float]:
    """A task's val metrics averaged over runs (the baseline of the Δm objective)."""
    keys = set.intersection(*(set(r.metrics["val"].get(task, {})) for r in results))
    return {k: float(np.mean([r.metrics["val"][task][k] for r in results])) for k in keys}
