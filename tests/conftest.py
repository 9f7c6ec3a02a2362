"""Shared fixtures: the seeded synthetic table (see `synthetic.py`), the bundled text model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from synthetic import run_data_stages, synthetic_frame, synthetic_params, write_synthetic


@pytest.fixture(autouse=True)
def _no_inherited_tracking_uri() -> Any:
    """No test starts with another test's MLFLOW_TRACKING_URI.

    `mlflow.set_tracking_uri` (called directly by many tests) also exports the variable, and
    multitune honours it as the user's choice: left over, it would send the next test's
    stages, in-process or in a `dvc repro` it starts, to the previous test's store.
    """
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture
def synthetic() -> pd.DataFrame:
    """A fresh copy of the synthetic table (300 rows)."""
    return synthetic_frame()


@pytest.fixture
def synthetic_parquet(tmp_path: Path) -> Path:
    """The synthetic table written to a parquet file in a temporary directory."""
    return write_synthetic(tmp_path / "input")


@pytest.fixture(scope="session")
def st_model() -> Any:
    """The bundled all-MiniLM-L6-v2, loaded once per test session (the slow bit)."""
    from multitune.embed.sentence_transformer import default_model_path, load_model

    return load_model(default_model_path(), device="cpu")


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The synthetic table run through ingest, split and embed (cheap encoders).

    Returns ``(data_dir, params)``: `data_dir` holds dataset.parquet, tasks.json,
    splits.parquet and features/ exactly as the DVC stages write them; `params` is the typed
    `Params` they ran with.
    """
    from multitune.config import validate_params

    root = tmp_path_factory.mktemp("synthetic_data")
    params = validate_params(synthetic_params(write_synthetic(root / "input")))
    run_data_stages(params, root / "data")
    return root / "data", params
