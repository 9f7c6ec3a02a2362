"""Training library: data on the device, the loop, metrics, checkpoints, prediction.

No Ray and no MLflow here: the sweep, the baselines and the final stage call `train`.
"""

from __future__ import annotations

from multitune.training.checkpoint import Checkpoint
from multitune.training.data import TrainingData
from multitune.training.loop import train
from multitune.training.metrics import delta_m, higher_is_better, joint_accuracy, primary_metric
from multitune.training.predict import evaluate, predict, predict_rows
from multitune.training.result import EpochReport, TrainResult, load_model, save_model

__all__ = [
    "Checkpoint",
    "EpochReport",
    "TrainResult",
    "TrainingData",
    "delta_m",
    "evaluate",
    "higher_is_better",
    "joint_accuracy",
    "load_model",
    "predict",
    "predict_rows",
    "primary_metric",
    "save_model",
    "train",
]
