"""A column that already holds vectors (audio, MIDI, image embeddings)."""

from __future__ import annotations

from typing import Literal

from multitune.embed.base import ENCODERS, Encoder
from multitune.registry import MethodConfig


class PrecomputedConfig(MethodConfig):
    """Vectors used as they are; all of one length."""

    name: Literal["precomputed"] = "precomputed"


@ENCODERS.register(PrecomputedConfig)
class PrecomputedEncoder(Encoder):
    """TODO(issue 2): implementation."""
