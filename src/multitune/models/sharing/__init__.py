"""Sharing architectures: one module each, registered in `SHARINGS`."""

from __future__ import annotations

from multitune.models.sharing import cgc, hard, mmoe  # noqa: F401 - registers the methods
from multitune.models.sharing.base import SHARINGS, SharedOutput, Sharing, SharingConfig

__all__ = ["SHARINGS", "SharedOutput", "Sharing", "SharingConfig"]
