"""`model:` and `train:` — the multi-task network and how it is trained (issue 3 fills these)."""

from __future__ import annotations

from multitune.config._base import StrictModel


class ModelConfig(StrictModel):
    """The network: encoders, fusion, sharing, heads."""


class TrainConfig(StrictModel):
    """The training loop."""
