"""Numeric feature columns, standardized with train statistics."""

from __future__ import annotations

from typing import Literal

from multitune.embed.base import ENCODERS, Encoder
from multitune.registry import MethodConfig


class NumericConfig(MethodConfig):
    """Numeric columns -> z-scores (mean and std from train rows)."""

    name: Literal["numeric"] = "numeric"


@ENCODERS.register(NumericConfig)
class NumericEncoder(Encoder):
    """TODO(issue 2): implementation."""
