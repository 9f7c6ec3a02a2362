"""Fixtures of the tuning tests."""

from __future__ import annotations

from typing import Any

import pytest
import ray


@pytest.fixture(scope="module")
def local_ray() -> Any:
    """One local Ray for the module: 2 CPUs, no dashboard."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=128 * 1024**2,
    )
    yield
    ray.shutdown()
