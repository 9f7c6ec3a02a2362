"""Proportional task sampling: ``p_k ∝ n_k``, the number of labelled train rows (Stickland &
Murray, 2019, "BERT and PALs", sec. 4, "proportional")."""

from __future__ import annotations

import numpy as np

from multitune.config.methods.sampling import ProportionalConfig
from multitune.training.sampling.base import SAMPLERS, TaskSampler, normalise


@SAMPLERS.register(ProportionalConfig)
class ProportionalSampler(TaskSampler):
    """``p_k = n_k / sum_j n_j``."""

    def probabilities(self, counts: np.ndarray, epoch: int, total_epochs: int) -> np.ndarray:
        """Proportional to counts."""
        return normalise(counts.astype(np.float64))
