"""What a training run returns, and saving/loading the trained model safely."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from safetensors.torch import load_file, save_file

from multitune.config.model import ModelConfig
from multitune.config.tasks import TaskConfig
from multitune.io import atomic_path
from multitune.models.heads import TaskSpec
from multitune.models.multitask import MultiTaskModel
from multitune.training.checkpoint import Checkpoint, cpu_state

FORMAT_VERSION = 1


@dataclass
class EpochReport:
    """Passed to the per-epoch callback.

    Attributes:
        epoch: 0-based epoch just finished.
        metrics: ``{task: {metric: value}}`` on the validation split.
        objective: the validation objective (higher is better; see `metrics.objective`).
        train_loss: ``{task: mean train loss}`` over the epoch.
        is_best: whether this epoch improved the objective.
        checkpoint: call to get a `Checkpoint` (copies the state; call only when saving).
    """

    epoch: int
    metrics: dict[str, dict[str, float]]
    objective: float
    train_loss: dict[str, float]
    is_best: bool
    checkpoint: Callable[[], Checkpoint]


@dataclass
class TrainResult:
    """A finished run.

    Attributes:
        metrics: ``metrics[split][task][metric]`` for splits train, val, test (best weights).
        group_metrics: ``group_metrics[split][group]["joint_accuracy"]`` for `task_groups`.
        history: one dict per epoch: epoch, objective, ``val`` {task: metrics},
            ``train_loss`` {task: loss}, ``weights`` {task: last step's weight}.
        epochs_run: epochs trained (early stopping may end before ``train.epochs``).
        best_epoch: 0-based epoch whose weights `model` holds.
        model: the trained network, best weights, in eval mode.
        info: seed, device and tasks of the run.
        steps_per_epoch: optimizer steps in each epoch.
        converged: whether the run stopped because validation stopped improving
            (``train.patience`` epochs without a better objective); False when it reached
            its epoch cap while still improving.
    """

    metrics: dict[str, dict[str, dict[str, float]]]
    group_metrics: dict[str, dict[str, dict[str, float]]]
    history: list[dict[str, Any]]
    epochs_run: int
    best_epoch: int
    model: MultiTaskModel
    info: dict[str, Any] = field(default_factory=dict)
    steps_per_epoch: int = 0
    converged: bool = False

    @property
    def steps_run(self) -> int:
        """Optimizer steps trained."""
        return self.epochs_run * self.steps_per_epoch

    @property
    def best_step(self) -> int:
        """The step at the end of the best epoch (the weights `model` holds)."""
        return (self.best_epoch + 1) * self.steps_per_epoch

    def save(self, directory: str | Path) -> Path:
        """Write the model (``model.safetensors`` + ``model.json``) to `directory`."""
        return save_model(self.model, directory)


def save_model(model: MultiTaskModel, directory: str | Path) -> Path:
    """Write `model` as safetensors weights plus the JSON needed to rebuild it."""
    spec = {
        "format_version": FORMAT_VERSION,
        "model_config": model.config.model_dump(mode="json"),
        "modality_dims": model.modality_dims,
        "tasks": [
            {
                "config": t.config.model_dump(mode="json"),
                "classes": t.classes,
                "n_labelled": t.n_labelled,
            }
            for t in model.task_specs
        ],
        "token_caches": model.token_caches,  # rebuilds a top_k backbone's layers
    }
    with atomic_path(directory) as tmp:
        tmp.mkdir(parents=True)
        save_file(cpu_state(model.state_dict()), str(tmp / "model.safetensors"))
        (tmp / "model.json").write_text(json.dumps(spec, indent=2) + "\n")
    return Path(directory)


def load_model(directory: str | Path, device: str | None = None) -> MultiTaskModel:
    """Rebuild a model saved by `TrainResult.save` / `save_model` (eval mode)."""
    d = Path(directory)
    spec = json.loads((d / "model.json").read_text())
    if spec.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{d}: unsupported model format {spec.get('format_version')!r}")
    adapter: TypeAdapter[Any] = TypeAdapter(TaskConfig)
    tasks = [
        TaskSpec(adapter.validate_python(t["config"]), t["classes"], t["n_labelled"])
        for t in spec["tasks"]
    ]
    # Models saved before input standardization existed took raw vectors.
    model_config = {"standardize": False, **spec["model_config"]}
    model = MultiTaskModel(
        ModelConfig.model_validate(model_config),
        spec["modality_dims"],
        tasks,
        spec.get("token_caches"),
    )
    model.load_state_dict(load_file(str(d / "model.safetensors"), device=device or "cpu"))
    return model.to(device or "cpu").eval()
