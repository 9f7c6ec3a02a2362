"""Task samplers: which rows make up the batches of an epoch when rows are labelled for only
some tasks.

Each step the sampler draws a task with probability ``p_k`` and takes the next ``batch_size``
rows labelled for it (a per-task shuffled order, reshuffled when exhausted). Every task's loss
is then the mean over the batch rows labelled for it, so rows are never given fake labels.
An epoch has the steps the trainer asks for (`train.epoch_steps`), or else
``ceil(n / batch_size)``, n = train rows labelled for at least one task. When every task is
labelled on the same rows an epoch is shuffled passes over them, cut at its steps.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
import torch
from torch import Tensor

from multitune.config.methods.sampling import SamplingMethod
from multitune.registry import MethodConfig, Registry


class TaskSampler(ABC):
    """Turns per-task label counts into per-step task probabilities.

    Contract:
      * built as ``Impl(config, tasks)``; bad settings raise ``ValueError``;
      * ``probabilities(counts, epoch, total_epochs)`` returns ``p`` with ``p >= 0``,
        ``sum(p) = 1`` and ``p_k = 0`` where ``counts_k = 0``;
      * ``epoch_order(...)`` (shared by all samplers) returns the epoch's row indices, a
        CPU ``long`` tensor the trainer moves to the device once and slices per batch.
    """

    def __init__(self, config: MethodConfig, tasks: list[str]) -> None:
        self.config = config
        self.tasks = list(tasks)

    @abstractmethod
    def probabilities(self, counts: np.ndarray, epoch: int, total_epochs: int) -> np.ndarray:
        """Probability of drawing each task at one step."""

    def epoch_order(
        self,
        rows: list[Tensor],
        batch_size: int,
        epoch: int,
        total_epochs: int,
        seed: int,
        steps: int | None = None,
    ) -> Tensor:
        """Row indices of one epoch, batch after batch.

        Args:
            rows: per task (in `tasks` order), the train row indices labelled for it (CPU long).
            batch_size: rows per step.
            epoch: 0-based epoch; with `seed` it fixes the order (resumable, deterministic).
            total_epochs: planned epochs (annealed sampling).
            seed: the run's seed.
            steps: batches in the epoch; None: one pass over the rows labelled for any task.
        """
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        if all(r.shape == rows[0].shape and torch.equal(r, rows[0]) for r in rows[1:]):
            one = rows[0]
            if steps is None:
                return one[torch.randperm(len(one), generator=gen)]
            passes = math.ceil(steps * batch_size / max(len(one), 1))
            order = torch.cat(
                [one[torch.randperm(len(one), generator=gen)] for _ in range(passes)]
            )
            return order[: steps * batch_size]
        counts = np.array([len(r) for r in rows], dtype=np.float64)
        if counts.sum() == 0:
            raise ValueError("no train row is labelled for any task")
        p = self.probabilities(counts, epoch, total_epochs)
        if steps is None:
            steps = math.ceil(len(torch.unique(torch.cat(rows))) / batch_size)
        draws = torch.multinomial(torch.as_tensor(p), steps, replacement=True, generator=gen)
        perms = [r[torch.randperm(len(r), generator=gen)] for r in rows]
        cursor = [0] * len(rows)
        out = []
        for k in draws.tolist():
            take = []
            need = batch_size
            while need:
                if cursor[k] >= len(perms[k]):
                    perms[k] = rows[k][torch.randperm(len(rows[k]), generator=gen)]
                    cursor[k] = 0
                chunk = perms[k][cursor[k] : cursor[k] + need]
                cursor[k] += len(chunk)
                need -= len(chunk)
                take.append(chunk)
            out.extend(take)
        return torch.cat(out)


def normalise(weights: np.ndarray) -> np.ndarray:
    """``weights / sum(weights)``."""
    total = weights.sum()
    if total <= 0:
        raise ValueError("no train row is labelled for any task")
    return weights / total


SAMPLERS: Registry[TaskSampler] = Registry("sampling", SamplingMethod)
