"""The whole of params.yaml: one section per stage."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from multitune.config._base import StrictModel
from multitune.config.data import DataConfig, SplitConfig
from multitune.config.final import FinalConfig
from multitune.config.model import ModelConfig, TrainConfig
from multitune.config.tasks import Identifier, TaskConfig
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
        return self
