"""Inter-task affinity measured inside one joint training run: TAG's lookahead.

Fifty et al., "Efficiently Identifying Task Groupings for Multi-Task Learning" (NeurIPS
2021). Every `every` steps of a multi-task run, before the optimizer moves: for each task i,
the shared parameters take one SGD step on task i's loss alone (``θ' = θ - lr * ∇θ L_i``, the
task-specific parameters unchanged), and every task j's loss is read again. The affinity of
i onto j at that step is

    Z[i, j] = 1 - L_j(θ') / L_j(θ)

positive when a step on i lowers j's loss (i helps j), negative when it raises it. The run's
matrix is the mean over the measured steps.

TAG reads the losses on the step's batch, where every task is labelled. Here a batch is
drawn for one task (rows are labelled for some tasks only: `multitune.training.sampling`),
so the lookahead reads a fixed sample of each task's labelled train rows instead (up to
`rows_per_task` each, drawn once per run): every task's loss is defined at every measured
step, and the steps differ only in the parameters. The lookahead runs with dropout off, so
the only thing that moves L_j is task i's step.

Cost: a measured step adds one forward, one backward per task and one forward per task over
the sample; with ``every = 5`` it is a fraction of the run's time (the README's table).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call

from multitune.models.multitask import MultiTaskModel
from multitune.training.data import TrainingData
from multitune.training.loop import task_losses

LossFn = Callable[[Mapping[str, Tensor]], Tensor]
"""Model outputs -> the per-task losses, stacked in the model's task order."""


class LookaheadAffinity:
    """A `train(step_hook=...)` hook that accumulates TAG's lookahead affinity.

    Args:
        tasks: The run's tasks, in the model's order.
        every: Measure every `every`-th optimizer step (1: every step).
        lr: The lookahead's SGD step size.
        rows_per_task: Labelled train rows of each task in the lookahead's sample.
        seed: Seed of the sample.
    """

    def __init__(
        self, tasks: list[str], every: int, lr: float, rows_per_task: int = 64, seed: int = 0
    ) -> None:
        if every < 1:
            raise ValueError("every must be >= 1")
        self.tasks, self.every, self.lr = list(tasks), every, lr
        self.rows_per_task, self.seed = rows_per_task, seed
        n = len(self.tasks)
        self._sum = np.zeros((n, n))
        self._count = np.zeros((n, n))
        self._rows: Tensor | None = None
        self.steps_measured = 0
        self._step = 0

    def sample(self, data: TrainingData) -> Tensor:
        """The lookahead's rows: up to `rows_per_task` labelled train rows of each task."""
        gen = torch.Generator().manual_seed(self.seed)
        train = data.splits["train"].cpu()
        picked = []
        for t in self.tasks:
            rows = train[data.labelled[t].cpu()[train]]
            picked.append(rows[torch.randperm(len(rows), generator=gen)[: self.rows_per_task]])
        return torch.unique(torch.cat(picked)).to(data.device)

    def __call__(self, model: MultiTaskModel, data: TrainingData) -> None:
        """Called before each optimizer step."""
        step, self._step = self._step, self._step + 1
        if step % self.every:
            return
        if self._rows is None:
            self._rows = self.sample(data)
        rows = self._rows
        batch = data.inputs(rows, model.token_modalities)
        z = lookahead(model, batch, lambda out: task_losses(model, out, data, rows), self.lr)
        seen = torch.isfinite(z).cpu().numpy()
        self._sum += np.where(seen, z.cpu().numpy(), 0.0)
        self._count += seen
        self.steps_measured += 1

    def matrix(self) -> np.ndarray:
        """Mean affinity ``[i, j]`` of a step on task i onto task j (NaN: never measured;
        the diagonal is each task's own step, kept for reference)."""
        with np.errstate(invalid="ignore"):
            return np.where(self._count > 0, self._sum / np.maximum(self._count, 1), np.nan)


def lookahead(
    model: MultiTaskModel, batch: Mapping[str, Any], losses: LossFn, lr: float
) -> Tensor:
    """One measurement: ``Z[i, j] = 1 - L_j(θ - lr ∇θ L_i) / L_j(θ)`` on `batch` (θ: the
    shared parameters that train now). NaN where L_j is zero (no labelled row of j) or no
    shared parameter trains."""
    was_training = model.training
    model.eval()
    try:
        named = {n: p for n, p in model.named_parameters()}
        shared_ids = {id(p) for p in model.shared_parameters() if p.requires_grad}
        shared = {n: p for n, p in named.items() if id(p) in shared_ids}
        if not shared:  # nothing is shared (or nothing shared trains): no step can transfer
            k = len(model.task_names)
            return torch.full((k, k), float("nan"))
        with torch.enable_grad():
            before = losses(model(batch))
            n = len(before)
            grads = [
                torch.autograd.grad(
                    before[i], list(shared.values()), retain_graph=i < n - 1, allow_unused=True
                )
                for i in range(n)
            ]
        base = before.detach()
        rows = []
        with torch.no_grad():
            for g in grads:
                stepped = {
                    name: p if gi is None else p - lr * gi
                    for (name, p), gi in zip(shared.items(), g, strict=True)
                }
                after = losses(functional_call(model, stepped, (batch,), strict=False))
                rows.append(1.0 - after / base)
        z = torch.stack(rows)
        return torch.where(base[None, :] > 0, z, torch.full_like(z, float("nan")))
    finally:
        model.train(was_training)
