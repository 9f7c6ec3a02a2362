"""Square-root sampling: ``p_k ∝ sqrt(n_k)`` (Stickland & Murray, 2019, "BERT and PALs",
sec. 4, "square root sampling")."""

from __future__ import annotations

import numpy as np

from multitune.config.methods.sampling import SqrtConfig
from multitune.training.sampling.base import SAMPLERS, TaskSampler, normalise


@SAMPLERS.register(SqrtConfig)
class SqrtSampler(TaskSampler):
    """``p_k ∝ n_k^0.5``."""

    def probabilities(self, counts: np.ndarray, epoch: int, total_epochs: int) -> np.ndarray:
        """Square-root counts."""
        return normalise(np.sqrt(counts))
