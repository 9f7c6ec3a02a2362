"""`tasks:` — what to predict. One config class per task type, discriminated by `type`."""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from multitune.config._base import StrictModel
from multitune.config._messages import value_hint

Identifier = Annotated[
    str,
    Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="A name made of letters, digits, _."),
]


class _TaskBase(StrictModel):
    name: Identifier = Field(description="The task's name: used in metrics, reports, outputs.")
    column: str = Field(description="The column of the input table that holds the target.")


class _CategoricalTask(_TaskBase):
    classes: list[str] | None = Field(
        default=None,
        description="The class labels, in order. Inferred (sorted) from the data when omitted; "
        "a label outside a given list is an error.",
    )

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("classes must be unique")
        return v


class ClassificationTask(_CategoricalTask):
    """One label out of several classes; cross-entropy."""

    type: Literal["classification"] = "classification"
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0, description="CE label smoothing.")
    class_weights: Literal["balanced"] | dict[str, float] | None = Field(
        default=None,
        description="Per-class loss weights: 'balanced' (inverse train frequency) or a mapping "
        "{class: weight >= 0} (classes left out: 1).",
    )

    @field_validator("class_weights", mode="before")
    @classmethod
    def _one_line_class_weights(cls, value: Any, info: ValidationInfo) -> Any:
        # One message instead of one per member of the union; classes checked when listed.
        if value is None or value == "balanced":
            return value
        if not isinstance(value, dict):
            raise ValueError(
                "expected balanced, or a weight per class {class: weight}"
                + _shown(value)
                + _balanced_hint(value)
            )
        for label, weight in value.items():
            if not isinstance(label, str):
                raise ValueError(f"class names are text: write '{label}' in quotes")
            number = _weight(weight)
            if number is None or number < 0:
                raise ValueError(
                    f"class '{label}': a weight is a number >= 0 (got {weight!r}), "
                    f"e.g. {{{label}: 2.0}}"
                )
        if value and not any(_weight(w) for w in value.values()):
            raise ValueError("every class weight is 0: give some class a weight > 0")
        classes: list[str] | None = info.data.get("classes")
        unknown = [c for c in value if classes is not None and c not in classes]
        if classes is not None and unknown:
            raise ValueError(
                f"'{unknown[0]}' is not one of the task's classes; weigh some of "
                f"{', '.join(classes)}"
            )
        return value


class BinaryTask(_CategoricalTask):
    """Two classes; the second of `classes` is the positive one. Binary cross-entropy."""

    type: Literal["binary"] = "binary"
    pos_weight: float | Literal["balanced"] | None = Field(
        default=None,
        description="BCE weight of positives: a number > 0, or 'balanced' (neg/pos).",
    )

    KEY_HINTS: ClassVar[dict[str, str]] = {
        "class_weights": "a binary task weighs its positives with pos_weight: a number > 0, "
        "or balanced",
    }

    @field_validator("pos_weight", mode="before")
    @classmethod
    def _one_line_pos_weight(cls, value: Any) -> Any:
        # One message instead of one per member of the union.
        if value is None or value == "balanced":
            return value
        weight = _weight(value)
        if weight is None or weight <= 0:
            raise ValueError(
                "expected a number > 0 (the loss weight of positives) or balanced "
                f"(negatives / positives){_shown(value)}{_balanced_hint(value)}"
            )
        return value

    @field_validator("classes")
    @classmethod
    def _two_classes(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(v) != 2:
            raise ValueError(f"a binary task has exactly 2 classes, got {len(v)}")
        return v


class MultilabelTask(_CategoricalTask):
    """Any subset of the classes; the column holds a list, or labels joined by `separator`."""

    type: Literal["multilabel"] = "multilabel"
    separator: str = Field(default="|", min_length=1, description="Joins labels in a string cell.")


class RegressionTask(_TaskBase):
    """A real value, standardized with train statistics; MSE or Huber loss."""

    type: Literal["regression"] = "regression"
    loss: Literal["mse", "huber"] = Field(
        default="mse", description="Loss on standardized target."
    )
    huber_delta: float = Field(default=1.0, gt=0.0, description="Huber's delta (standard units).")


class DistributionTask(_CategoricalTask):
    """A soft target: a categorical label smoothed into a distribution; KL-divergence loss."""

    type: Literal["distribution"] = "distribution"
    smoothing: float = Field(
        default=0.1, ge=0.0, lt=1.0, description="Mass spread evenly over the other classes."
    )
    missing: Literal["uniform", "mask"] = Field(
        default="mask",
        description="A row without a label: a uniform target ('uniform') or no loss ('mask').",
    )


class TokenClassificationTask(_CategoricalTask):
    """One label per word of a text modality (e.g. named-entity tags in BIO form).

    The column holds, per row, a list of labels aligned to the text's whitespace-separated
    words (or the labels joined by spaces). Each word's first sub-word token carries its
    label; the others are ignored. The head reads the token states of `modality`, whose
    encoder must cache them (`cache_top_layers`).
    """

    type: Literal["token_classification"] = "token_classification"
    modality: str | None = Field(
        default=None,
        description="The text modality whose tokens are labelled; null: the only modality "
        "whose encoder caches token states.",
    )


def _weight(value: Any) -> float | None:
    """A loss weight as a finite number, or None (YAML's true/false are not weights)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _balanced_hint(value: Any) -> str:
    return value_hint("literal_error", value, {"expected": "'balanced'"})


def _shown(value: Any) -> str:
    """` (got <value>)` for a scalar, as the loader shows refused values."""
    return "" if isinstance(value, dict | list) else f" (got {value!r})"


TaskConfig = Annotated[
    ClassificationTask
    | BinaryTask
    | MultilabelTask
    | RegressionTask
    | DistributionTask
    | TokenClassificationTask,
    Field(discriminator="type"),
]

CATEGORICAL_TYPES = (
    "classification",
    "binary",
    "multilabel",
    "distribution",
    "token_classification",
)


__all__ = [
    "CATEGORICAL_TYPES",
    "BinaryTask",
    "ClassificationTask",
    "DistributionTask",
    "Identifier",
    "MultilabelTask",
    "RegressionTask",
    "TaskConfig",
    "TokenClassificationTask",
]
