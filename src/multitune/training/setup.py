"""Building the pieces a run needs: device, model, optimizer, schedule."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from multitune.config.model import ModelConfig, TrainConfig
from multitune.errors import UserError
from multitune.models.multitask import COMPONENTS, MultiTaskModel
from multitune.training.data import TrainingData
from multitune.training.freezing import FreezingPolicy
from multitune.training.weighting import Balancer


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``auto``/None -> CUDA when available, else CPU; an explicit device is kept."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device is cuda but no CUDA device is available; use auto or cpu")
    return resolved


def with_class_weighting(data: TrainingData, setting: str | Mapping[str, str]) -> TrainingData:
    """`data` whose classification and binary tasks use `setting` (``train.class_weighting``:
    one value for every such task, or one per task, a task left out getting ``none``) unless
    their own config sets class weights; ``none`` leaves a task as it is."""
    tasks = []
    for spec in data.tasks:
        own = setting.get(spec.name, "none") if isinstance(setting, Mapping) else setting
        key = {"classification": "class_weights", "binary": "pos_weight"}.get(spec.type)
        if own != "none" and key is not None and getattr(spec.config, key) is None:
            spec = replace(spec, config=spec.config.model_copy(update={key: own}))
        tasks.append(spec)
    changed = any(new is not old for new, old in zip(tasks, data.tasks, strict=True))
    return replace(data, tasks=tasks) if changed else data


def build_model(config: ModelConfig, data: TrainingData) -> MultiTaskModel:
    """The network for `data`'s modalities and tasks, with input and loss statistics fitted
    on train rows."""
    model = MultiTaskModel(config, data.modality_dims, data.tasks, data.token_caches)
    for m, layers in model.backbone.items():  # fine-tuning starts from the pretrained layers
        layers.load_pretrained(data.token_caches[m]["model"])  # type: ignore[operator]
    model = model.to(data.device)
    train = data.splits["train"]
    model.fit_inputs(data.features, train)
    for spec in data.tasks:
        model.head(spec.name).fit_statistics(
            data.targets[spec.name][train], data.labelled[spec.name][train]
        )
    return model


def build_optimizer(
    model: MultiTaskModel, balancer: Balancer, freezing: FreezingPolicy, cfg: TrainConfig
) -> torch.optim.AdamW:
    """AdamW with one param group per learning rate (`train.lr` x the policy's multiplier of
    each component; components at the same rate share a group) and one for the balancer's
    own parameters (no weight decay).

    Fewer groups, same update: the fused kernel runs once per group and step, and AdamW's
    arithmetic is per tensor, so grouping changes no result, only the per-step overhead.
    """
    by_lr: dict[float, list[nn.Parameter]] = {}
    for component in COMPONENTS:
        lr = cfg.lr * freezing.lr_multiplier(component)
        by_lr.setdefault(lr, []).extend(getattr(model, component).parameters())
    groups: list[dict[str, Any]] = [{"params": p, "lr": lr} for lr, p in by_lr.items() if p]
    extra = balancer.optimizer_parameters()
    if extra:
        groups.append({"params": extra, "lr": cfg.lr, "weight_decay": 0.0})
    # The fused kernel (CPU and CUDA) does one pass per step instead of one op per tensor.
    fused = all(p.dtype == torch.float32 for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)


def build_schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup * total_steps``, then constant or cosine decay to 0."""
    warm = int(cfg.warmup * total_steps)
    cosine = cfg.schedule == "cosine"

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if not cosine:
            return 1.0
        progress = (step - warm) / max(total_steps - warm, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def trainable(params: list[nn.Parameter]) -> list[nn.Parameter]:
    """The parameters that currently require gradients."""
    return [p for p in params if p.requires_grad]
