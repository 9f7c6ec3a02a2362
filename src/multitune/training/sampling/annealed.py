"""Annealed sampling: ``p_k ∝ n_k^alpha`` with ``alpha = 1 - decay * e / (E - 1)``, from
proportional in the first epoch towards uniform in the last (Stickland & Murray, 2019, "BERT
and PALs", sec. 4, "annealed sampling", decay 0.8)."""

from __future__ import annotations

import numpy as np

from multitune.config.methods.sampling import AnnealedConfig
from multitune.training.sampling.base import SAMPLERS, TaskSampler, normalise


@SAMPLERS.register(AnnealedConfig)
class AnnealedSampler(TaskSampler):
    """``p_k ∝ n_k^(1 - decay * e / (E - 1))``."""

    def probabilities(self, counts: np.ndarray, epoch: int, total_epochs: int) -> np.ndarray:
        """Counts raised to the epoch's alpha."""
        progress = epoch / (total_epochs - 1) if total_epochs > 1 else 0.0
        alpha = 1.0 - self.config.decay * min(progress, 1.0)  # type: ignore[attr-defined]
        return normalise(np.where(counts > 0, counts**alpha, 0.0))
