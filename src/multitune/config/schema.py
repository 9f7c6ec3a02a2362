"""The whole of params.yaml: one section per stage."""

from __future__ import annotations

import difflib
import itertools
from typing import Annotated

from pydantic import Field, ValidationError, model_validator

from multitune.config._base import StrictModel
from multitune.config.data import DataConfig, SplitConfig
from multitune.config.final import FinalConfig
from multitune.config.methods.backbone import BackboneMethod, TopKConfig
from multitune.config.methods.freezing import WarmStartConfig
from multitune.config.model import ModelConfig, TrainConfig, check_class_weighting_tasks
from multitune.config.space import MethodKnob, knob_values
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
        read = {
            token_modality(self.data, task)
            for task in self.tasks
            if isinstance(task, TokenClassificationTask)
        }
        check_stride(self.data, read)
        # Checked here, not when a trial builds its model after ingest, split and embed ran.
        if isinstance(self.model.backbone, TopKConfig):
            backbone_modalities(self.data, self.model.backbone)
        if self.sweep.space.backbone is not None:  # baselines search it too
            check_backbone_space(self.data, self.model.backbone, self.sweep.space.backbone)
        check_warm_start_tasks(self.train.freezing, self.sweep.space.freezing, names)
        types = {t.name: t.type for t in self.tasks}
        self.train.check_class_weighting(types)
        if self.sweep.space.class_weighting is not None:  # a mapping among its values
            for value in knob_values(self.sweep.space.class_weighting):
                check_class_weighting_tasks(value, types, where="sweep.space.class_weighting")
        self.final.grouping.check_tasks(names)
        return self


def check_warm_start_tasks(freezing: object, knob: MethodKnob | None, names: list[str]) -> None:
    """Every task a warm start may start from (`train.freezing`, `sweep.space.freezing`) is
    one of the tasks.

    Raises:
        ValueError: naming the setting and the unknown task.
    """
    found: list[tuple[str, object]] = []
    if isinstance(freezing, WarmStartConfig) and freezing.task is not None:
        found.append(("train.freezing.task", freezing.task))
    for option in knob.options if knob is not None else []:
        if option.name == WarmStartConfig.model_fields["name"].default and "task" in option.params:
            found += [
                ("sweep.space.freezing.warm_start.task", t)
                for t in knob_values(option.params["task"])
            ]
    for where, task in found:
        if task not in names:
            close = difflib.get_close_matches(str(task), names, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(
                f"{where}: '{task}' is not a task; {hint}tasks are: {', '.join(names)}"
            )


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


def check_stride(data: DataConfig, token_modalities: set[str]) -> None:
    """`encoder.stride` is set only where token tasks read the windows it overlaps.

    A text longer than the encoder's window is cut into overlapping windows only for token
    tasks; elsewhere its pooled vector reads the first window, and a stride would be
    accepted and ignored.

    Raises:
        ValueError: a modality that no token task reads sets a stride.
    """
    for name, modality in data.modalities.items():
        stride = getattr(modality.encoder, "stride", None)
        if stride is not None and name not in token_modalities:
            raise ValueError(
                f"data.modalities.{name}.encoder.stride: {stride} has no effect on modality "
                f"'{name}', which no token task reads: its pooled vectors read each text's "
                "first window only; drop stride (it sets how much a long text's windows "
                "overlap for token tasks)"
            )


def cached_layers(data: DataConfig) -> dict[str, int]:
    """Modality -> transformer layers whose entering token states the embed stage caches."""
    return {
        name: layers
        for name, m in data.modalities.items()
        if (layers := int(getattr(m.encoder, "cache_top_layers", 0))) > 0
    }


def backbone_modalities(
    data: DataConfig, backbone: TopKConfig, where: str = "model.backbone", searched: bool = False
) -> list[str]:
    """The text modalities a `top_k` backbone fine-tunes, picked as `MultiTaskModel` picks
    them: those it names, else every modality with cached token states.

    Args:
        data: The `data:` section.
        backbone: The backbone.
        where: The params key the backbone comes from, for messages.
        searched: The backbone is one the search may pick (`sweep.space.backbone`).

    Raises:
        ValueError: a fine-tuned modality does not cache token states, or caches fewer
            layers than `backbone.layers`; the message names the setting that fixes it.
    """
    k = backbone.layers
    cached = cached_layers(data)
    what = f"top_k (layers: {k})" + (", which the search may pick," if searched else "")
    if backbone.modalities is None:
        modalities = list(cached)
        if not modalities:
            other = "drop top_k from the search" if searched else f"use {where}: {{name: frozen}}"
            raise ValueError(
                f"{where}: {what} fine-tunes the cached token states of a text modality, but "
                f"no modality caches them; {_cache_fix(data, None, k)}, or {other}"
            )
    else:
        modalities = list(backbone.modalities)
        for m in modalities:
            if m not in data.modalities:
                close = difflib.get_close_matches(m, list(data.modalities), n=1, cutoff=0.5)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise ValueError(
                    f"{where}.modalities: '{m}' is not a modality{hint} "
                    f"Modalities: {', '.join(data.modalities)}."
                )
            if m not in cached:
                raise ValueError(
                    f"{where}: {what} fine-tunes modality '{m}', which caches no token "
                    f"states; {_cache_fix(data, m, k)}"
                )
    for m in modalities:
        if cached[m] < k:
            lower = (
                f"keep the search's layers at most {cached[m]}"
                if searched
                else f"lower {where}.layers to {cached[m]}"
            )
            raise ValueError(
                f"{where}: {what} trains {k} layers, but "
                f"data.modalities.{m}.encoder.cache_top_layers is {cached[m]}; "
                f"set cache_top_layers: {k} or more, or {lower}"
            )
    return modalities


def check_backbone_space(data: DataConfig, base: BackboneMethod, knob: MethodKnob) -> None:
    """Check every `top_k` backbone the search may sample (see `backbone_modalities`).

    A trial's backbone is `base`'s options overlaid with the chosen option's sampled values
    (as `multitune.tuning.space.apply` builds it); each combination of those values' choices
    or range bounds is checked, the most layers first (so the fix named covers them all).

    Raises:
        ValueError: a backbone the search may sample needs token states not cached.
    """
    carried = base.model_dump() if isinstance(base, TopKConfig) else {}
    candidates: list[TopKConfig] = []
    for option in knob.options:
        if option.name != TopKConfig.model_fields["name"].default:
            continue
        keys = list(option.params)
        for values in itertools.product(*(knob_values(option.params[k]) for k in keys)):
            raw = {**carried, "name": option.name, **dict(zip(keys, values, strict=True))}
            try:
                candidates.append(TopKConfig.model_validate(raw))
            except ValidationError:  # a bad value: SearchSpace names it
                continue
    for backbone in sorted(candidates, key=lambda b: -b.layers):
        backbone_modalities(data, backbone, where="sweep.space.backbone", searched=True)


def _cache_fix(data: DataConfig, modality: str | None, layers: int) -> str:
    """How to cache `layers` layers' token states: for `modality`, or for a text modality."""
    able = [n for n, m in data.modalities.items() if hasattr(m.encoder, "cache_top_layers")]
    if modality is not None and modality not in able:
        encoder = getattr(data.modalities[modality].encoder, "name", "its encoder")
        return (
            f"'{modality}' is encoded by {encoder}, and only a sentence_transformer encoder "
            "caches them (cache_top_layers)"
        )
    targets = [modality] if modality is not None else able
    if not targets:
        return (
            "add a text modality with encoder: {name: sentence_transformer, "
            f"cache_top_layers: {layers}}}"
        )
    keys = " or ".join(f"data.modalities.{m}.encoder.cache_top_layers: {layers}" for m in targets)
    return f"set {keys}"
