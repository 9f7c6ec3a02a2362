"""The Ray Tune trainable: validate the sampled config, train, report every epoch.

Each epoch reports the validation metrics (`val/<task>/<metric>`) and the score to Tune: the
objective the trial's early stopping maximizes (Delta-m over every metric against the
baselines in the sweep, also reported as `delta_m`; the task's primary metric in a baseline);
every `checkpoint_every` epochs with a checkpoint of the trainer's state, so a crashed or
interrupted trial resumes from its last checkpointed epoch. The final report carries a
checkpoint too, holding only that report (`final.json`): a trial that Tune's saved state
still shows unfinished after a killed driver (it finished after the last state snapshot)
restarts from it and reports its result again at once, without training
(`multitune.tuning.state.restore_checkpoints` points it there). The features arrive through
Ray's object store (`tune.with_parameters`), put there once by the driver.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ray import tune

from multitune.config import Params
from multitune.config.methods.freezing import WarmStartConfig
from multitune.training import Checkpoint, EpochReport, TrainingData, train
from multitune.tuning.trial import (
    FAILED_SCORE,
    SCORE,
    TrialSpec,
    clean_metrics,
    flat_metrics,
    trial_score,
)

STATE_DIR = "state"
FINAL = "final.json"


def run_trial(config: dict[str, Any], data: TrainingData, spec: TrialSpec) -> None:
    """Train one sampled configuration (a Tune function trainable).

    Args:
        config: The values Optuna sampled, by parameter name.
        data: The training data (from the object store).
        spec: What every trial of this search shares.
    """
    torch.set_num_threads(max(1, spec.threads))
    params = spec.params(config)  # validated first thing: a bad combination fails here
    tasks = spec.trial_tasks(config)
    types = {t.name: t.type for t in params.tasks}
    resume = _restored()
    if isinstance(resume, dict):  # finished before its driver was killed: nothing to train
        tune.report(resume)
        return

    def report(epoch: EpochReport) -> None:
        metrics = _epoch_metrics(epoch, spec, types)
        # A checkpoint costs a state copy, a write and Tune's bookkeeping (it snapshots the
        # experiment as old ones are deleted): every few epochs, not every epoch.
        if (epoch.epoch + 1) % spec.checkpoint_every:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="multitune-ckpt-") as tmp:
            epoch.checkpoint().save(Path(tmp) / STATE_DIR)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    with tempfile.TemporaryDirectory(prefix="multitune-warm-") as warm:
        result = train(
            _warm_start_here(params, spec, Path(warm)),
            data,
            tasks=tasks,
            seed=spec.seed,
            callback=report,
            resume=resume,
            device=spec.device,
            baseline=spec.baseline,
        )
    val = clean_metrics(result.metrics["val"])
    score = trial_score(result.metrics["val"], types, spec.baseline)
    final = {
        **flat_metrics("val", val),
        SCORE: score,
        "delta_m": score if spec.baseline else 0.0,
        "objective": _finite(result.history[result.best_epoch]["objective"])
        if 0 <= result.best_epoch < len(result.history)
        else FAILED_SCORE,
        "epoch": result.epochs_run,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch + 1,
        "steps": result.steps_run,
        "best_step": result.best_step,
        "converged": int(result.converged),
        "final": 1,
    }
    with tempfile.TemporaryDirectory(prefix="multitune-final-") as tmp:
        (Path(tmp) / FINAL).write_text(json.dumps(final))
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(tmp))


def _warm_start_here(params: Params, spec: TrialSpec, folder: Path) -> Params:
    """`params` with a warm start's source model written to `folder`: its weights came with
    the spec, so a trial on any node reads them from its own disk."""
    freezing: object = params.train.freezing
    if not isinstance(freezing, WarmStartConfig) or freezing.task is None:
        return params
    source = spec.warm_sources.get(freezing.task)
    if source is None or freezing.path != source.path:
        return params
    (folder / "model.safetensors").write_bytes(source.weights)
    local = freezing.model_copy(update={"path": str(folder)})
    return params.model_copy(update={"train": params.train.model_copy(update={"freezing": local})})


def _restored() -> Checkpoint | dict[str, Any] | None:
    """The trainer's state to continue from, or the final report of a finished trial."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        return read_checkpoint(Path(directory))


def read_checkpoint(directory: Path) -> Checkpoint | dict[str, Any]:
    """A trial checkpoint's contents: the final report of a finished trial (`FINAL`), else
    the trainer's state to continue from (`STATE_DIR`). Raises on a file cut short."""
    final = directory / FINAL
    if final.is_file():
        return dict(json.loads(final.read_text()))
    return Checkpoint.load(directory / STATE_DIR)


def _epoch_metrics(
    epoch: EpochReport, spec: TrialSpec, types: Mapping[str, str]
) -> dict[str, float]:
    val = clean_metrics(epoch.metrics)
    score = trial_score(epoch.metrics, types, spec.baseline)  # = epoch.objective, or failed
    metrics = {
        **flat_metrics("val", val),
        **{f"train_loss/{t}": float(v) for t, v in epoch.train_loss.items()},
        "objective": _finite(epoch.objective),
        SCORE: score,
        "delta_m": score if spec.baseline else 0.0,
        "epoch": epoch.epoch + 1,
        "final": 0,
    }
    return metrics


def _finite(value: Any) -> float:
    x = float(value)
    return x if math.isfinite(x) else FAILED_SCORE
