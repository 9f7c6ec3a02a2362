"""Uniform task sampling: every task with labels is drawn equally often, ``p_k = 1/K``
(the round-robin-like baseline in e.g. Stickland & Murray, 2019, "BERT and PALs", sec. 4)."""

from __future__ import annotations

import numpy as np

from multitune.config.methods.sampling import UniformConfig
from multitune.training.sampling.base import SAMPLERS, TaskSampler, normalise


@SAMPLERS.register(UniformConfig)
class UniformSampler(TaskSampler):
    """``p_k ∝ 1`` over tasks with labelled rows."""

    def probabilities(self, counts: np.ndarray, epoch: int, total_epochs: int) -> np.ndarray:
        """Equal over labelled tasks."""
        return normalise((counts > 0).astype(np.float64))
