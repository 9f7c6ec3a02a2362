"""`data:` and `split:` — where the table comes from, its modalities, and how it is split."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from multitune.config._base import StrictModel
from multitune.config.methods.encoders import EncoderMethod


class ModalityConfig(StrictModel):
    """One input view of a row: its source column(s) and the encoder that turns them into a
    vector. Give `column` for text and vector columns, `columns` for numeric features."""

    column: str | None = Field(default=None, description="The source column (text, vectors).")
    columns: list[str] | None = Field(
        default=None, min_length=1, description="Several source columns (numeric features)."
    )
    encoder: EncoderMethod = Field(description="How to encode it: {name: <encoder>, ...}.")  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _one_source(self) -> ModalityConfig:
        if (self.column is None) == (self.columns is None):
            raise ValueError("give exactly one of `column` (one column) or `columns` (a list)")
        return self

    @property
    def source_columns(self) -> list[str]:
        """The table columns this modality reads."""
        return [self.column] if self.column is not None else list(self.columns or [])


ModalityName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class DataConfig(StrictModel):
    """The input table."""

    source: str = Field(
        default="builtin:movies-debates",
        description="`builtin:<name>` for a bundled dataset, or a path to a .parquet/.csv file.",
    )
    id_column: str | None = Field(
        default=None,
        description="A column of unique row ids; when null, ids are derived from row content.",
    )
    modalities: dict[ModalityName, ModalityConfig] = Field(
        min_length=1, description="Modality name -> source column(s) and encoder."
    )
    invalid_rows: Literal["error", "drop"] = Field(
        default="error",
        description="NaN/inf in a numeric or vector column: stop with an error, or drop those "
        "rows and report how many.",
    )

    @field_validator("source")
    @classmethod
    def _source_form(cls, v: str) -> str:
        if v.startswith("builtin:"):
            return v
        if not v.lower().endswith((".parquet", ".csv")):
            raise ValueError("expected `builtin:<name>` or a path ending in .parquet or .csv")
        return v


class SplitConfig(StrictModel):
    """Train/val/test split: seeded, stratified over tasks, group- and duplicate-aware."""

    seed: int = Field(default=42, description="Seed of the split.")
    fractions: tuple[float, float, float] = Field(
        default=(0.8, 0.1, 0.1), description="Train, val, test fractions; they sum to 1."
    )
    group_column: str | None = Field(
        default=None, description="Rows sharing a value of this column stay in one split."
    )

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f <= 0 or f >= 1 for f in v):
            raise ValueError("each fraction must be between 0 and 1 (exclusive)")
        if abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(f"fractions must sum to 1, they sum to {sum(v):g}")
        return v
