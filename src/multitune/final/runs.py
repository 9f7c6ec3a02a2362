"""Train the final configs over seeds (in worker processes, `multitune.final.pool`, or on
Ray), each run logged as an MLflow child run of the final stage's run. Training is pure
(`fit`): a worker trains and predicts the test split, and the driver logs what it returns,
so only the driver talks to the tracking store; ``workers=1`` trains in this process.
`run_all` asks first whether a job's run already finished (a killed stage resumed:
`multitune.final.resume`) and trains only the others.

Each logged run carries its record as an artifact (`record/`: `record.json` and the
predictions as `.npz`, `write_record`), so a finished run can be read back exactly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, as_completed
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multitune.config import Params
from multitune.final.pool import close_pool, local_pool, worker_data
from multitune.final.progress import active as active_progress
from multitune.final.scoring import SeedRun
from multitune.tracking import RunHandle, start_child
from multitune.training import TrainingData, TrainResult, predict_rows, train
from multitune.training.affinity import LookaheadAffinity

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunJob:
    """One training run of the final stage.

    Attributes:
        key: The caller's handle for the result (e.g. ``("single", "speaker", 1000)``).
        params: The config to train (model/train sections already the chosen ones).
        kind: "multi", "single" or "transfer" (a tag, and the report's label).
        tasks: Tasks to train (None: all).
        seed: The seed.
        baseline: Single-task val metrics for the Δm early-stopping objective.
        splits: Row indices to use as train/val/test instead of the data's own (a
            cross-validation fold); None: the data's split.
        affinity_every: Measure TAG's lookahead affinity every this many steps
            (`multitune.training.affinity`); None: not measured. It does not change training.
    """

    key: tuple[Any, ...]
    params: Params
    kind: str
    tasks: tuple[str, ...] | None
    seed: int
    baseline: Mapping[str, Mapping[str, float]] | None = None
    splits: Mapping[str, torch.Tensor] | None = None
    affinity_every: int | None = None


@dataclass(frozen=True)
class Fitted:
    """What a worker returns: the trained result, its test- and val-split predictions,
    when the job asked, the affinity matrix ``[i, j]`` over its tasks (in their order), and
    the Ray node that trained it (empty in the local process pool)."""

    result: TrainResult
    test_pred: dict[str, np.ndarray]
    val_pred: dict[str, np.ndarray] = field(default_factory=dict)
    affinity: np.ndarray | None = None
    node: str = ""


def fit(job: RunJob, data: TrainingData | None = None) -> Fitted:
    """Train `job` and predict the test split (runs in a worker or in-process)."""
    data = data if data is not None else worker_data()
    assert data is not None, "fit() in a worker needs init_worker first"
    if job.splits is not None:
        data = replace(data, splits={k: v.to(data.device) for k, v in job.splits.items()})
    tasks = list(job.tasks) if job.tasks is not None else None
    hook = None
    if job.affinity_every is not None:
        names = [t for t in data.task_names if tasks is None or t in tasks]
        grouping = job.params.final.grouping
        hook = LookaheadAffinity(names, job.affinity_every, grouping.lookahead_lr)
    result = train(
        job.params, data, tasks=tasks, seed=job.seed, baseline=job.baseline, step_hook=hook
    )
    pred = {
        split: {
            k: v.cpu().numpy()
            for k, v in predict_rows(result.model, data, data.splits[split]).items()
        }
        for split in ("test", "val")
    }
    result.model.cpu()  # a worker's CUDA tensors must not travel back to the driver
    return Fitted(result, pred["test"], pred["val"], hook.matrix() if hook else None)


Backend = Callable[[Sequence[RunJob], TrainingData], Iterator[tuple[RunJob, Fitted]]]
"""Trains jobs somewhere else than this machine's process pool (`multitune.tuning.remote`:
Ray tasks on a cluster or a GPU), yielding each job's result as it finishes."""

_BACKEND: ContextVar[Backend | None] = ContextVar("multitune_final_backend", default=None)


@contextlib.contextmanager
def training_backend(backend: Backend | None) -> Iterator[None]:
    """Send every `fit_all` of the block to `backend` (None: the local process pool)."""
    token = _BACKEND.set(backend)
    try:
        yield
    finally:
        _BACKEND.reset(token)


def fit_all(
    jobs: Sequence[RunJob],
    data: TrainingData,
    *,
    workers: int,
    threads: int | None,
    on_done: Callable[[RunJob], None] | None = None,
) -> Iterator[tuple[RunJob, Fitted]]:
    """Train every job, yielding results as they finish: on the stage's backend when one is
    set (`training_backend`), else `workers` at a time in local processes.

    Worker processes are spawned (not forked: the driver holds threads), receive the data
    once each and stay for the next call on the same data (`multitune.final.pool`); each uses
    `threads` threads (None: the cores shared out between the workers). A failing run raises
    in the driver once the runs already started finish; queued ones are cancelled. The
    stage's `progress` (when active) hears of every job.
    """
    progress = active_progress()
    backend = _BACKEND.get()
    if progress is not None and jobs:
        at_once = workers if backend is None else getattr(backend, "slots", len(jobs))
        progress.queued(len(jobs), min(len(jobs), at_once))

    def done(job: RunJob) -> None:
        if on_done is not None:
            on_done(job)
        if progress is not None:
            progress.finished()

    if backend is not None and jobs:
        for job, fitted in backend(jobs, data):
            done(job)
            yield job, fitted
        return
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            fitted = fit(job, data)
            done(job)
            yield job, fitted
        return
    per_worker = threads if threads is not None else max(1, (os.cpu_count() or 1) // workers)
    pool = local_pool(data, workers, per_worker)
    futures: dict[Future[Fitted], RunJob] = {pool.submit(fit, job): job for job in jobs}
    try:
        for future in as_completed(futures):
            job = futures[future]
            result = future.result()
            done(job)
            yield job, result
    except BaseException:
        close_pool()  # queued runs cancelled; a failed worker is not reused
        raise


Record = Callable[[RunJob, Fitted], SeedRun]
"""Turns a finished run into its record (and logs it, in the final stage)."""

Reuse = Callable[[RunJob], SeedRun | None]
"""The record of a job's run that already finished (a resumed stage), or None: train it."""


@dataclass(frozen=True)
class Trainings:
    """How the final stage's phases train and record their runs, shared by all of them.

    Attributes:
        workers: Trainings at once in the local process pool (the Ray backend, when set,
            decides its own; see `training_backend`).
        threads: Threads per training (None: the cores shared out between workers).
        record: Turns a finished run into its record (the stage logs it to MLflow).
        reuse: The record of a run that already finished (a resumed stage), or None.
    """

    workers: int = 1
    threads: int | None = None
    record: Record | None = None
    reuse: Reuse | None = None


def run_all(
    jobs: Sequence[RunJob],
    data: TrainingData,
    trainings: Trainings,
    *,
    on_done: Callable[[RunJob], None] | None = None,
) -> Iterator[tuple[RunJob, SeedRun]]:
    """Each job's record: read back where `trainings.reuse` finds its finished run, else
    trained (`fit_all`) and turned into a record by `trainings.record` (default
    `offline_record`)."""
    record, reuse = trainings.record or offline_record, trainings.reuse
    fresh = []
    progress = active_progress()
    for job in jobs:
        found = reuse(job) if reuse is not None else None
        if found is None:
            fresh.append(job)
        else:
            if progress is not None:
                progress.queued(1, 0)
                progress.finished(already=True)
            yield job, found
    for job, fitted in fit_all(
        fresh, data, workers=trainings.workers, threads=trainings.threads, on_done=on_done
    ):
        yield job, record(job, fitted)


def offline_record(job: RunJob, fitted: Fitted) -> SeedRun:
    """A run's record without a tracking store (its run id is its name)."""
    return seed_run(job, fitted, run_name(job, list(fitted.result.info["tasks"])))


def _history_metrics(history: Sequence[Mapping[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for h in history:
        metrics: dict[str, Any] = {"val": h.get("val", {}), "train_loss": h.get("train_loss", {})}
        if "objective" in h:
            metrics["objective"] = h["objective"]
        out.append((int(h["epoch"]), metrics))  # type: ignore[arg-type]
    return out


def run_name(job: RunJob, names: Sequence[str]) -> str:
    """`<kind>-<tasks or all>-s<seed>`."""
    return f"{job.kind}-{'+'.join(names) if job.kind != 'multi' else 'all'}-s{job.seed}"


def log_run(
    job: RunJob,
    fitted: Fitted,
    *,
    parent_run_id: str,
    tags: Mapping[str, str],
    save_to: Path | None = None,
) -> SeedRun:
    """Log a finished run as a child run: params, per-epoch curves, final metrics, steps
    trained, best step and convergence (also a `converged` tag). Saves the model if asked.

    Returns:
        The run's record, with its test predictions.
    """
    result = fitted.result
    names = list(result.info["tasks"])
    handle: RunHandle = start_child(
        parent_run_id,
        run_name(job, names),
        {
            **tags,
            "kind": job.kind,
            "tasks": ",".join(names),
            "seed": str(job.seed),
            "converged": str(result.converged).lower(),
            **({"node": fitted.node} if fitted.node else {}),
        },
    )
    try:
        handle.log_params(
            {
                "model": job.params.model.model_dump(mode="json"),
                "train": {**job.params.train.model_dump(mode="json"), "seed": job.seed},
                "tasks": names,
            }
        )
        for epoch, metrics in _history_metrics(result.history):
            handle.log_metrics(metrics, step=epoch)
        # The kept (best) epoch's scores under their own keys: `val/...` is the per-epoch
        # curve, whose latest value in the UI is the last epoch's, not the kept model's.
        handle.log_metrics({"best_val": result.metrics["val"], "test": result.metrics["test"]})
        if result.group_metrics.get("test"):
            handle.log_metrics({"test_group": result.group_metrics["test"]})
        handle.log_metrics(
            {
                "epochs_run": result.epochs_run,
                "best_epoch": result.best_epoch,
                "steps": result.steps_run,
                "best_step": result.best_step,
                "converged": float(result.converged),
            }
        )
        run = seed_run(job, fitted, handle.run_id)
        with tempfile.TemporaryDirectory(prefix="multitune-record-") as tmp:
            handle.log_artifacts(write_record(run, Path(tmp) / "record"), "record")
        if save_to is not None:
            result.save(save_to)
            handle.log_artifacts(save_to, "model")
    except BaseException as err:
        handle.end("FAILED", error=f"{type(err).__name__}: {err}")
        raise
    handle.end()
    if not result.converged:
        logger.warning(
            "run %s reached its cap of %d epochs while still improving: not converged",
            handle.run_id,
            job.params.train.epochs,
        )
    return run


def seed_run(job: RunJob, fitted: Fitted, run_id: str) -> SeedRun:
    """The record of a finished run under `run_id`, with its test predictions."""
    result = fitted.result
    return SeedRun(
        run_id=run_id,
        kind=job.kind,
        seed=job.seed,
        tasks=tuple(result.info["tasks"]),
        test_pred=fitted.test_pred,
        val_pred=fitted.val_pred,
        history=list(result.history),
        epochs_run=result.epochs_run,
        test_metrics=result.metrics["test"],
        val_metrics=result.metrics["val"],
        steps=result.steps_run,
        best_step=result.best_step,
        converged=result.converged,
        affinity=fitted.affinity,
    )


_SCALARS = ("run_id", "kind", "seed", "epochs_run", "steps", "best_step", "converged")


def write_record(run: SeedRun, directory: Path) -> Path:
    """Write `run` to `directory` (JSON, and its predictions as `.npz`: no pickle), exactly
    as `read_record` reads it back."""
    directory.mkdir(parents=True)
    meta = {name: getattr(run, name) for name in _SCALARS}
    meta |= {
        "tasks": list(run.tasks),
        "history": run.history,
        "test_metrics": run.test_metrics,
        "val_metrics": run.val_metrics,
    }
    (directory / "record.json").write_text(json.dumps(meta, default=_plain))
    for split in ("test", "val"):
        arrays: dict[str, Any] = dict(run.predictions(split))
        np.savez(directory / f"{split}.npz", allow_pickle=False, **arrays)
    if run.affinity is not None:
        np.save(directory / "affinity.npy", run.affinity)
    return directory


def read_record(directory: Path) -> SeedRun:
    """The run `write_record` wrote to `directory`."""
    meta = json.loads((directory / "record.json").read_text())
    preds = {}
    for split in ("test", "val"):
        with np.load(directory / f"{split}.npz", allow_pickle=False) as npz:
            preds[split] = {k: npz[k] for k in npz.files}
    affinity = directory / "affinity.npy"
    return SeedRun(
        **{name: meta[name] for name in _SCALARS},
        tasks=tuple(meta["tasks"]),
        history=meta["history"],
        test_metrics=meta["test_metrics"],
        val_metrics=meta["val_metrics"],
        test_pred=preds["test"],
        val_pred=preds["val"],
        affinity=np.load(affinity, allow_pickle=False) if affinity.exists() else None,
    )


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and arrays in a history (exact: float64 round-trips)."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def mean_metrics(runs: Sequence[SeedRun], task: str, split: str) -> dict[str, float]:
    """A task's `val` or `test` metrics averaged over runs (val: the baseline of the Δm
    objective), over the metrics every run has."""

    def of(r: SeedRun) -> dict[str, dict[str, float]]:
        return r.val_metrics if split == "val" else r.test_metrics

    keys = set.intersection(*(set(of(r).get(task, {})) for r in runs))
    return {k: float(np.mean([of(r)[task][k] for r in runs])) for k in keys}
