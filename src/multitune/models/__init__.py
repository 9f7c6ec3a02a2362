"""The multi-task network: `nn.Module`s only (no data loading, no training loop)."""

from __future__ import annotations

from multitune.models.encoders import ModalityEncoder
from multitune.models.fusion import FUSIONS, Fusion, FusionConfig
from multitune.models.heads import HEADS, TaskHead, TaskSpec
from multitune.models.multitask import ModelOutput, MultiTaskModel
from multitune.models.sharing import SHARINGS, Sharing, SharingConfig

__all__ = [
    "FUSIONS",
    "HEADS",
    "SHARINGS",
    "Fusion",
    "FusionConfig",
    "ModalityEncoder",
    "ModelOutput",
    "MultiTaskModel",
    "Sharing",
    "SharingConfig",
    "TaskHead",
    "TaskSpec",
]
