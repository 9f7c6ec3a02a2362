"""The whole of params.yaml: one section per stage."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from multitune.config._base import StrictModel
from multitune.config.data import DataConfig, SplitConfig
from multitune.config.final import FinalConfig
from multitune.config.model import ModelConfig, TrainConfig
from multitune.config.tasks import Identifier, TaskConfig, TokenClassificationTask
from multitune.config.tracking import MlflowConfig, RegistryConfig
from multitune.config.tuning import BaselinesConfig, SweepConfig


class Params(StrictModel):
    """params.yaml."""

    data: DataConfig = Field(description="The input table and its modalities.")
    tasks: list[TaskConfig] = Field(min_length=1, description="The targets to predict.")
    task_groups: dict[Identifier, Annotated[list[Identifier], Field(min_length=2)]] = Field(
        default_factory=dict,
        description="Named groups of tasks scored jointly (every task right at once).",
    )
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    baselines: BaselinesConfig = Field(default_factory=BaselinesConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    final: FinalConfig = Field(default_factory=FinalConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> Params:
        names = [t.name for t in self.tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"task names must be unique; repeated: {', '.join(dupes)}")
        for group, members in self.task_groups.items():
            unknown = [m for m in members if m not in names]
            if unknown:
                raise ValueError(
                    f"task_groups.{group} names unknown task(s) {', '.join(unknown)}; "
                    f"tasks are: {', '.join(names)}"
                )
        for task in self.tasks:
            if isinstance(task, TokenClassificationTask):
                token_modality(self.data, task)
        return self


def token_modality(data: DataConfig, task: TokenClassificationTask) -> str:
    """The text modality whose tokens a token task labels.

    Raises:
        ValueError: the named modality (or, unnamed, any single one) does not cache token
            states.
    """
    cached = [
        name
        for name, m in data.modalities.items()
        if getattr(m.encoder, "cache_top_layers", 0) > 0
    ]
    if task.modality is not None:
        if task.modality not in cached:
            raise ValueError(
                f"token task '{task.name}': modality '{task.modality}' "
                + (
                    "is not a modality"
                    if task.modality not in data.modalities
                    else "does not cache token states"
                )
                + "; give it encoder: {name: sentence_transformer, cache_top_layers: 1} or more"
            )
        return task.modality
    if len(cached) != 1:
        raise ValueError(
            f"token task '{task.name}' reads the token states of a text modality: "
            + (
                "set data.modalities.<name>.encoder.cache_top_layers (sentence_transformer)"
                if not cached
                else f"several cache them ({', '.join(cached)}); set its `modality`"
            )
        )
    return cached[0]
