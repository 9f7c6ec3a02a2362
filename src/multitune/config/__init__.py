"""The params.yaml schema and its only loader."""

from __future__ import annotations

from multitune.config.data import DataConfig, ModalityConfig, SplitConfig
from multitune.config.final import FinalConfig
from multitune.config.loader import load_params, validate_params
from multitune.config.model import ModelConfig, TrainConfig
from multitune.config.schema import Params
from multitune.config.tasks import (
    BinaryTask,
    ClassificationTask,
    DistributionTask,
    MultilabelTask,
    RegressionTask,
    TaskConfig,
    TokenClassificationTask,
)
from multitune.config.tracking import MlflowConfig, RegistryConfig
from multitune.config.tuning import BaselinesConfig, SweepConfig

__all__ = [
    "BaselinesConfig",
    "BinaryTask",
    "ClassificationTask",
    "DataConfig",
    "DistributionTask",
    "FinalConfig",
    "MlflowConfig",
    "ModalityConfig",
    "ModelConfig",
    "MultilabelTask",
    "Params",
    "RegistryConfig",
    "RegressionTask",
    "SplitConfig",
    "SweepConfig",
    "TaskConfig",
    "TokenClassificationTask",
    "TrainConfig",
    "load_params",
    "validate_params",
]
