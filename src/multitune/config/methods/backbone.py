"""`model.backbone`: the text backbone, frozen or its top layers fine-tuned.

The backbone itself is `multitune.models.backbone`; `MultiTaskModel` picks it by config class.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from multitune.registry import MethodConfig, method_union


class FrozenConfig(MethodConfig):
    """The text encoder stays frozen: its pooled vectors are the modality's input."""

    name: Literal["frozen"] = "frozen"


class TopKConfig(MethodConfig):
    """Fine-tune the top layers of the text encoder, run on cached token states."""

    name: Literal["top_k"] = "top_k"
    layers: int = Field(
        default=1,
        ge=1,
        le=48,
        description="Top transformer layers to train; at most the modality's "
        "`cache_top_layers` (the cached layers below them run frozen).",
    )
    unfreeze_after: int = Field(
        default=0,
        ge=0,
        description="Epochs the layers stay frozen before they train (gradual unfreezing); "
        "0 trains them from the start. Their learning rate: train.freezing.lr_multipliers."
        "backbone.",
    )
    modalities: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Text modalities to fine-tune; null: every modality with cached token states.",
    )


BackboneMethod = method_union(
    FrozenConfig,
    TopKConfig,
)
