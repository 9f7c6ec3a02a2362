"""The training loop: index-sliced batches over on-device tensors, AdamW, early stopping."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from multitune.config.model import TrainConfig
from multitune.config.schema import Params
from multitune.errors import ConfigError
from multitune.models.multitask import MultiTaskModel
from multitune.registry import MethodConfig
from multitune.training.checkpoint import Checkpoint, cpu_state
from multitune.training.clipping import clip_grad_norm
from multitune.training.data import TrainingData
from multitune.training.freezing import FREEZINGS
from multitune.training.freezing.base import FreezingPolicy
from multitune.training.metrics import objective
from multitune.training.predict import evaluate
from multitune.training.result import EpochReport, TrainResult
from multitune.training.sampling import SAMPLERS
from multitune.training.sampling.base import TaskSampler
from multitune.training.setup import (
    build_model,
    build_optimizer,
    build_schedule,
    resolve_device,
    trainable,
    with_class_weighting,
)
from multitune.training.weighting import WEIGHTINGS, StepContext
from multitune.training.weighting.base import Balancer

log = logging.getLogger(__name__)


StepHook = Callable[[MultiTaskModel, TrainingData], None]
"""`train`'s per-step hook, called with the model and the run's data before each step."""


def task_losses(
    model: MultiTaskModel, outputs: Mapping[str, Tensor], data: TrainingData, idx: Tensor
) -> Tensor:
    """Each task's masked mean loss over rows `idx` (zero for a task with none labelled),
    stacked in the model's task order."""
    return torch.stack(
        [
            model.head(t).loss(outputs[t], data.targets[t][idx], data.labelled[t][idx])
            for t in model.task_names
        ]
    )


def labelled_train_rows(data: TrainingData, tasks: Sequence[str] | None = None) -> int:
    """Train rows labelled for at least one of `tasks` (all of `data`'s when None): the rows
    a run of those tasks trains on. They size its epochs when ``train.epoch_steps`` is null,
    and both sides' searched batch sizes (`multitune.config.space.batch_size_choices`)."""
    names = list(tasks) if tasks is not None else data.task_names
    train_idx = data.splits["train"].cpu()
    if not names:
        return 0
    labelled = torch.stack([data.labelled[t].cpu()[train_idx] for t in names]).any(0)
    return int(labelled.sum())


def train(
    params: Params,
    data: TrainingData,
    *,
    tasks: list[str] | None = None,
    seed: int | None = None,
    callback: Callable[[EpochReport], None] | None = None,
    resume: Checkpoint | None = None,
    device: torch.device | str | None = None,
    baseline: Mapping[str, Mapping[str, float]] | None = None,
    step_hook: StepHook | None = None,
) -> TrainResult:
    """Train `params.model` with `params.train` on `data`.

    The phases, each its own function below: `_set_up` (data on the device, model, methods,
    optimizer), `_Stopping.resumed` (where a checkpoint left off), then per epoch
    `_one_epoch` (the optimizer steps), `_Stopping.validate` (score, keep the best, count
    patience) and `_checkpoint` (what `callback` may save), and `_finish` (the best weights,
    scored on every split).

    Args:
        params: validated params (sections `model`, `train`, `task_groups` are read).
        data: features, targets and splits (`TrainingData`).
        tasks: train only these tasks (one task = a single-task baseline); all when None.
        seed: overrides ``train.seed``.
        callback: called after every epoch with an `EpochReport`.
        resume: a `Checkpoint` from an earlier run of the same config: continue after it.
        device: overrides ``train.device`` (auto = CUDA when available).
        baseline: single-task validation metrics ``{task: {metric: value}}`` (a multi-task
            run): early stopping then maximizes Δm over every metric against them, the
            sweep's trial score and the final stage's gate; without, the (mean) normalized
            primary metric (see `multitune.training.metrics.objective`).
        step_hook: called before every optimizer step with the model and the run's data
            (its tasks selected, on the run's device), e.g.
            `multitune.training.affinity.LookaheadAffinity`; it must leave the model as it
            found it.

    Returns:
        A `TrainResult` holding the best epoch's weights and its metrics on every split.
    """
    run = _set_up(params, data, tasks, params.train.seed if seed is None else seed, device)
    cfg = run.cfg
    stopping = _Stopping.resumed(run, resume)
    for epoch in range(stopping.start, cfg.epochs):
        if stopping.bad >= cfg.patience:
            break
        mean_losses, weights = _one_epoch(run, epoch, step_hook)
        val, _ = evaluate(run.model, run.data, "val", batch_size=cfg.eval_batch_size)
        score = objective(val, run.data.task_types, baseline)
        improved = stopping.validate(run, epoch, score)
        train_loss = dict(zip(run.data.task_names, mean_losses.tolist(), strict=True))
        stopping.history.append(
            {
                "epoch": epoch,
                "step": (epoch + 1) * run.steps,
                "objective": score,
                "val": val,
                "train_loss": train_loss,
                "weights": dict(zip(run.data.task_names, weights.cpu().tolist(), strict=True)),
            }
        )
        log.info("epoch %d objective %.4f loss %s", epoch, score, train_loss)
        if callback is not None:
            snapshot = _checkpoint(run, stopping, epoch)
            callback(EpochReport(epoch, val, score, train_loss, improved, snapshot))
    return _finish(run, stopping, params)


@dataclass
class _Run:
    """What one training run set up: its data on the device and the pieces that train."""

    cfg: TrainConfig
    data: TrainingData
    seed: int
    model: MultiTaskModel
    freezing: FreezingPolicy
    balancer: Balancer
    sampler: TaskSampler
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    rows: list[Tensor]
    """Per task, its labelled train rows."""
    steps: int
    """Optimizer steps per epoch."""
    shared: list[torch.nn.Parameter]
    per_task: list[list[torch.nn.Parameter]]


def _set_up(
    params: Params,
    data: TrainingData,
    tasks: list[str] | None,
    seed: int,
    device: torch.device | str | None,
) -> _Run:
    """The data on the run's device, the model and its methods, the optimizer and schedule.

    Raises:
        ConfigError: settings that conflict with the data or the tasks.
        ValueError: no train row is labelled for any of the tasks.
    """
    cfg = params.train
    try:
        cfg.check_class_weighting({t.name: t.type for t in params.tasks})
    except ValueError as err:
        raise ConfigError(str(err)) from None
    data = data.select(tasks).to(resolve_device(device if device is not None else cfg.device))
    data = with_class_weighting(data, cfg.class_weighting)
    names = data.task_names
    torch.manual_seed(seed)
    try:  # settings that only conflict with the data or tasks surface here
        model = build_model(params.model, data)
        freezing = FREEZINGS.build(cfg.freezing, names)
        freezing.setup(model)
        # A subset run of a multi-task config keeps only its tasks' per-task options.
        weighting: MethodConfig = cfg.weighting
        if tasks is not None:
            weighting = weighting.for_tasks(names)
        balancer = WEIGHTINGS.build(weighting, names).to(data.device)
        sampler = SAMPLERS.build(cfg.sampling, names)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    optimizer = build_optimizer(model, balancer, freezing, cfg)
    train_idx = data.splits["train"].cpu()
    rows = [train_idx[data.labelled[t].cpu()[train_idx]] for t in names]
    n_rows = labelled_train_rows(data, names)
    if n_rows == 0:
        raise ValueError("no train row is labelled for any of the tasks")
    steps = cfg.epoch_steps or math.ceil(n_rows / cfg.batch_size)
    schedule = build_schedule(optimizer, cfg, steps * cfg.epochs)
    return _Run(
        cfg,
        data,
        seed,
        model,
        freezing,
        balancer,
        sampler,
        optimizer,
        schedule,
        rows,
        steps,
        model.shared_parameters(),
        [model.task_parameters(t) for t in names],
    )


@dataclass
class _Stopping:
    """Early stopping's state: the best epoch so far, its weights, the epochs since."""

    best_state: dict[str, Tensor]
    start: int = 0
    best_epoch: int = -1
    best_score: float = -math.inf
    bad: int = 0
    history: list[dict[str, object]] = field(default_factory=list)

    @classmethod
    def resumed(cls, run: _Run, resume: Checkpoint | None) -> _Stopping:
        """A fresh start, or where `resume` left off (its weights, methods' and optimizer's
        state loaded into `run`)."""
        if resume is None:
            return cls(best_state=cpu_state(run.model.state_dict()))
        run.model.load_state_dict(resume.model)
        run.balancer.load_state_dict(resume.balancer)
        run.optimizer.load_state_dict(resume.optimizer)
        run.schedule.load_state_dict(resume.scheduler)
        meta = resume.meta
        return cls(
            best_state=resume.best_model,
            start=resume.epoch + 1,
            best_epoch=meta["best_epoch"],
            best_score=meta["best_score"],
            bad=meta["bad_epochs"],
            history=list(meta["history"]),
        )

    def validate(self, run: _Run, epoch: int, score: float) -> bool:
        """Take the epoch's validation objective; whether it improved on the best.

        A NaN objective (no metric defined) is never an improvement. Until some epoch has
        scored there is nothing to stop on: the latest weights are kept and patience waits,
        so a run whose validation never scores trains to its cap (and is not converged).
        """
        if math.isnan(score):
            if math.isinf(self.best_score):
                self.best_epoch, self.best_state = epoch, cpu_state(run.model.state_dict())
            else:
                self.bad += 1
            return False
        if score > self.best_score:
            self.best_epoch, self.best_score, self.bad = epoch, score, 0
            self.best_state = cpu_state(run.model.state_dict())
            return True
        self.bad += 1
        return False


def _one_epoch(run: _Run, epoch: int, step_hook: StepHook | None) -> tuple[Tensor, Tensor]:
    """The epoch's optimizer steps; each task's mean loss and the last step's task weights."""
    cfg, model, data, balancer = run.cfg, run.model, run.data, run.balancer
    run.freezing.apply(model, epoch)
    ctx = StepContext(
        [], trainable(run.shared), [trainable(p) for p in run.per_task], epoch, cfg.epochs
    )
    clip_params = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(run.seed * 7919 + epoch)  # dropout stream per epoch: resumable
    host_order = run.sampler.epoch_order(
        run.rows, cfg.batch_size, epoch, cfg.epochs, run.seed, steps=cfg.epoch_steps
    )
    order, host_rows = host_order.to(data.device), host_order.numpy()
    model.train()
    total = torch.zeros(len(run.data.task_names), device=data.device)
    weights = torch.ones(len(run.data.task_names))
    n_steps = 0
    for s in range(0, len(order), cfg.batch_size):
        idx = order[s : s + cfg.batch_size]
        # Token batches take their shapes from the host's copy of the rows: no step waits
        # for the device.
        batch = data.inputs(idx, model.token_modalities, host_rows[s : s + cfg.batch_size])
        if step_hook is not None:
            step_hook(model, data)
        out = model.forward_all(batch)
        losses = task_losses(model, out.outputs, data, idx)
        run.optimizer.zero_grad(set_to_none=True)
        ctx.features = out.features
        weights = balancer.backward(losses, ctx)
        if cfg.grad_clip is not None:
            clip_grad_norm(clip_params, cfg.grad_clip)
        run.optimizer.step()
        run.schedule.step()
        if balancer.needs_recompute:

            def recompute(batch: dict[str, Any] = batch, idx: Tensor = idx) -> Tensor:
                with torch.no_grad():
                    return task_losses(model, model(batch), data, idx)

            balancer.after_step(recompute)
        else:
            balancer.after_step()
        total += losses.detach()
        n_steps += 1
    mean_losses = total / max(n_steps, 1)
    balancer.epoch_end(epoch, mean_losses)
    return mean_losses, weights


def _checkpoint(run: _Run, stopping: _Stopping, epoch: int) -> Callable[[], Checkpoint]:
    """What the epoch's callback may save to resume from: built only when it asks."""
    state: dict[str, float] = {
        "best_epoch": stopping.best_epoch,
        "best_score": stopping.best_score,
        "bad_epochs": stopping.bad,
    }
    best = stopping.best_state
    history = stopping.history

    def snapshot() -> Checkpoint:
        return Checkpoint(
            epoch=epoch,
            model=cpu_state(run.model.state_dict()),
            best_model=dict(best),
            balancer=cpu_state(run.balancer.state_dict()),
            optimizer=run.optimizer.state_dict(),
            scheduler=run.schedule.state_dict(),
            meta={**state, "history": list(history), "seed": run.seed},
        )

    return snapshot


def _finish(run: _Run, stopping: _Stopping, params: Params) -> TrainResult:
    """The best epoch's weights back in the model, scored on every split."""
    model, names = run.model, run.data.task_names
    model.load_state_dict(stopping.best_state)
    model.eval()
    metrics, groups = {}, {}
    group_defs = {g: m for g, m in params.task_groups.items() if all(t in names for t in m)}
    for split in ("train", "val", "test"):
        metrics[split], groups[split] = evaluate(
            model, run.data, split, group_defs, run.cfg.eval_batch_size
        )
    return TrainResult(
        metrics=metrics,
        group_metrics=groups,
        history=stopping.history,
        epochs_run=len(stopping.history),
        best_epoch=stopping.best_epoch,
        model=model,
        info={"seed": run.seed, "device": str(run.data.device), "tasks": names},
        steps_per_epoch=run.steps,
        converged=stopping.bad >= run.cfg.patience,
    )
