"""The training loop: index-sliced batches over on-device tensors, AdamW, early stopping."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from multitune.errors import ConfigError
from multitune.models.multitask import MultiTaskModel
from multitune.registry import MethodConfig
from multitune.training.checkpoint import Checkpoint, cpu_state
from multitune.training.clipping import clip_grad_norm
from multitune.training.data import TrainingData
from multitune.training.freezing import FREEZINGS
from multitune.training.metrics import objective
from multitune.training.predict import evaluate
from multitune.training.result import EpochReport, TrainResult
from multitune.training.sampling import SAMPLERS
from multitune.training.setup import (
    build_model,
    build_optimizer,
    build_schedule,
    resolve_device,
    trainable,
    with_class_weighting,
)
from multitune.training.weighting import WEIGHTINGS, StepContext

if TYPE_CHECKING:
    from multitune.config.schema import Params

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
    and both sides' searched batch sizes (`multitune.tuning.space.batch_size_choices`)."""
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
    cfg = params.train
    seed = cfg.seed if seed is None else seed
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
    types = {t.name: t.type for t in data.tasks}
    shared, per_task = model.shared_parameters(), [model.task_parameters(t) for t in names]

    start, best_epoch, best_score, bad = 0, -1, -math.inf, 0
    history: list[dict[str, object]] = []
    best_state = cpu_state(model.state_dict())
    if resume is not None:
        model.load_state_dict(resume.model)
        balancer.load_state_dict(resume.balancer)
        optimizer.load_state_dict(resume.optimizer)
        schedule.load_state_dict(resume.scheduler)
        best_state = resume.best_model
        start = resume.epoch + 1
        best_epoch, best_score = resume.meta["best_epoch"], resume.meta["best_score"]
        bad, history = resume.meta["bad_epochs"], list(resume.meta["history"])

    epoch = start - 1
    for epoch in range(start, cfg.epochs):
        if bad >= cfg.patience:
            break
        freezing.apply(model, epoch)
        ctx = StepContext(
            [], trainable(shared), [trainable(p) for p in per_task], epoch, cfg.epochs
        )
        clip_params = [p for p in model.parameters() if p.requires_grad]
        torch.manual_seed(seed * 7919 + epoch)  # dropout stream per epoch: resumable
        host_order = sampler.epoch_order(
            rows, cfg.batch_size, epoch, cfg.epochs, seed, steps=cfg.epoch_steps
        )
        order, host_rows = host_order.to(data.device), host_order.numpy()
        model.train()
        total = torch.zeros(len(names), device=data.device)
        weights = torch.ones(len(names))
        n_steps = 0
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            # Token batches take their shapes from the host's copy of the rows: no step
            # waits for the device.
            batch = data.inputs(idx, model.token_modalities, host_rows[s : s + cfg.batch_size])
            if step_hook is not None:
                step_hook(model, data)
            out = model.forward_all(batch)
            losses = task_losses(model, out.outputs, data, idx)
            optimizer.zero_grad(set_to_none=True)
            ctx.features = out.features
            weights = balancer.backward(losses, ctx)
            if cfg.grad_clip is not None:
                clip_grad_norm(clip_params, cfg.grad_clip)
            optimizer.step()
            schedule.step()
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

        val, _ = evaluate(model, data, "val", batch_size=cfg.eval_batch_size)
        score = objective(val, types, baseline)
        # A NaN objective (no metric defined) is never an improvement. Until some epoch has
        # scored there is nothing to stop on: the latest weights are kept and patience waits,
        # so a run whose validation never scores trains to its cap (and is not converged).
        if math.isnan(score):
            improved = False
            if math.isinf(best_score):
                best_epoch, best_state = epoch, cpu_state(model.state_dict())
            else:
                bad += 1
        elif score > best_score:
            improved, best_epoch, best_score, bad = True, epoch, score, 0
            best_state = cpu_state(model.state_dict())
        else:
            improved, bad = False, bad + 1
        train_loss = dict(zip(names, mean_losses.tolist(), strict=True))
        history.append(
            {
                "epoch": epoch,
                "step": (epoch + 1) * steps,
                "objective": score,
                "val": val,
                "train_loss": train_loss,
                "weights": dict(zip(names, weights.cpu().tolist(), strict=True)),
            }
        )
        log.info("epoch %d objective %.4f loss %s", epoch, score, train_loss)
        if callback is not None:
            state: dict[str, float] = {
                "best_epoch": best_epoch,
                "best_score": best_score,
                "bad_epochs": bad,
            }

            def snapshot(
                epoch: int = epoch,
                state: dict[str, float] = state,
                best: dict[str, Tensor] = best_state,
            ) -> Checkpoint:
                return Checkpoint(
                    epoch=epoch,
                    model=cpu_state(model.state_dict()),
                    best_model=dict(best),
                    balancer=cpu_state(balancer.state_dict()),
                    optimizer=optimizer.state_dict(),
                    scheduler=schedule.state_dict(),
                    meta={**state, "history": list(history), "seed": seed},
                )

            callback(EpochReport(epoch, val, score, train_loss, improved, snapshot))

    model.load_state_dict(best_state)
    model.eval()
    metrics, groups = {}, {}
    group_defs = {g: m for g, m in params.task_groups.items() if all(t in names for t in m)}
    for split in ("train", "val", "test"):
        metrics[split], groups[split] = evaluate(
            model, data, split, group_defs, cfg.eval_batch_size
        )
    return TrainResult(
        metrics=metrics,
        group_metrics=groups,
        history=history,
        epochs_run=len(history),
        best_epoch=best_epoch,
        model=model,
        info={"seed": seed, "device": str(data.device), "tasks": names},
        steps_per_epoch=steps,
        converged=bad >= cfg.patience,
    )
