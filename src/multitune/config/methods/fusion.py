"""`model.fusion`: the settings of each fusion, `{name: <fusion>, modality_dropout: p, ...}`.

One config class per fusion, on `FusionConfig` (the options every fusion has); the fusions
are in `multitune.models.fusion`, one module each, registered against these classes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from multitune.registry import MethodConfig, method_union


class FusionConfig(MethodConfig):
    """Options every fusion has."""

    modality_dropout: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Training-time probability that a row's modality is replaced by a learned "
        "vector (per modality), so the model copes with a missing modality.",
    )


class AttentionConfig(FusionConfig):
    """Self-attention across modality tokens, then mean-pool: ``out_dim = dim``."""

    name: Literal["attention"] = "attention"
    heads: int = Field(default=4, ge=1, description="Attention heads; must divide encoder.hidden.")
    dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Dropout on attention weights."
    )


class ConcatConfig(FusionConfig):
    """Concatenate the modality encodings: ``out_dim = n_modalities * dim``."""

    name: Literal["concat"] = "concat"


class FilmConfig(FusionConfig):
    """Condition the other modalities on one: ``out_dim = 2 * dim`` (``dim`` if alone)."""

    name: Literal["film"] = "film"
    conditioner: str | None = Field(
        default=None, description="The conditioning modality; the first modality when null."
    )


class GatedConfig(FusionConfig):
    """Sigmoid gates per modality from the concatenated encodings: ``out_dim = dim``."""

    name: Literal["gated"] = "gated"


class HierarchicalConfig(FusionConfig):
    """Fuse modality groups, then groups: ``out_dim = n_groups * dim``."""

    name: Literal["hierarchical"] = "hierarchical"
    groups: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Group name -> its modalities. Unlisted modalities are groups of one.",
    )


class MeanConfig(FusionConfig):
    """Average the modality encodings: ``out_dim = dim``."""

    name: Literal["mean"] = "mean"


FusionMethod = method_union(
    AttentionConfig,
    ConcatConfig,
    FilmConfig,
    GatedConfig,
    HierarchicalConfig,
    MeanConfig,
)
"""How modality encodings become one vector. The order is the one in which a wrong name's
message lists the valid names."""
