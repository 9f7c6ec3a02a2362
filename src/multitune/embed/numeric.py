"""Numeric feature columns, standardized with train statistics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multitune.config.methods.encoders import NumericConfig
from multitune.embed.base import ENCODERS, Encoder
from multitune.errors import DataError
from multitune.registry import MethodConfig

STATE = "numeric.json"


@ENCODERS.register(NumericConfig)
class NumericEncoder(Encoder):
    """z = (x - mean) / std per column, with mean and std of the train rows.

    A constant column (std 0) is centred only, so it encodes to zeros.
    """

    def __init__(self, config: MethodConfig) -> None:
        super().__init__(config)
        self.columns: list[str] = []
        self.mean = np.zeros(0)
        self.std = np.ones(0)

    @staticmethod
    def _matrix(frame: pd.DataFrame) -> np.ndarray:
        values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).any(axis=1).sum())
            raise DataError(f"numeric encoder: {bad} row(s) hold NaN, inf or non-numbers")
        return values

    def fit(self, frame: pd.DataFrame) -> None:
        """Learn each column's mean and standard deviation from the train rows."""
        values = self._matrix(frame)
        self.columns = [str(c) for c in frame.columns]
        self.mean = values.mean(axis=0)
        std = values.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Standardize `frame`'s columns (same columns, same order as in `fit`)."""
        z = (self._matrix(frame) - self.mean) / self.std
        return np.ascontiguousarray(z, dtype=np.float32)

    @property
    def dim(self) -> int:
        """One output per column."""
        return len(self.columns)

    def save(self, directory: Path) -> None:
        """Write columns, means and stds as JSON."""
        directory.mkdir(parents=True, exist_ok=True)
        state = {"columns": self.columns, "mean": self.mean.tolist(), "std": self.std.tolist()}
        (directory / STATE).write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, config: MethodConfig, directory: Path) -> NumericEncoder:
        """Restore a fitted encoder from `save`'s JSON."""
        state = json.loads((directory / STATE).read_text())
        encoder = cls(config)
        encoder.columns = list(state["columns"])
        encoder.mean = np.asarray(state["mean"], dtype=np.float64)
        encoder.std = np.asarray(state["std"], dtype=np.float64)
        return encoder

    def describe(self) -> dict[str, Any]:
        """meta.json entry."""
        return {"encoder": "numeric", "dim": self.dim, "columns": self.columns}
