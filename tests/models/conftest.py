"""Fixtures of the model tests: tiny tensors, one thread."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    """Tiny matrices: threads only add contention on the shared CI cores."""
    torch.set_num_threads(1)
