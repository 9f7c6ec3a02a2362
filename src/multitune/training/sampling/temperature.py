"""Temperature sampling: ``p_k ∝ n_k^(1/T)`` (Arivazhagan et al., 2019, "Massively
Multilingual Neural Machine Translation in the Wild", sec. 4.2). T = 1 is proportional,
T -> inf uniform."""

from __future__ import annotations

import numpy as np

from multitune.config.methods.sampling import TemperatureConfig
from multitune.training.sampling.base import SAMPLERS, TaskSampler, normalise


@SAMPLERS.register(TemperatureConfig)
class TemperatureSampler(TaskSampler):
    """``p_k ∝ n_k^(1/T)``."""

    def __init__(self, config: TemperatureConfig, tasks: list[str]) -> None:
        super().__init__(config, tasks)
        if config.temperature <= 0:
            raise ValueError(f"train.sampling.temperature must be > 0, got {config.temperature}")
        self.temperature = config.temperature

    def probabilities(self, counts: np.ndarray, epoch: int, total_epochs: int) -> np.ndarray:
        """Tempered counts."""
        return normalise(np.where(counts > 0, counts ** (1.0 / self.temperature), 0.0))
