"""Base class of every params.yaml section."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A params section: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    KEY_HINTS: ClassVar[dict[str, str]] = {}
    """Unknown keys a user is likely to write here -> where the setting lives (the loader
    adds it to the unknown-key message)."""
