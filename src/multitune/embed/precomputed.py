"""A column that already holds vectors (audio, MIDI, image embeddings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from multitune.embed.base import ENCODERS, Encoder
from multitune.errors import DataError
from multitune.registry import MethodConfig

STATE = "precomputed.json"


class PrecomputedConfig(MethodConfig):
    """Vectors used as they are; all of one length."""

    name: Literal["precomputed"] = "precomputed"


def stack_vectors(cells: pd.Series, dim: int | None = None) -> np.ndarray:
    """Cells holding equal-length vectors (lists, arrays or JSON strings) -> `(n, dim)`.

    Raises:
        DataError: a cell is missing, lengths differ (or differ from `dim`), or a value is
            NaN or inf.
    """
    rows = [json.loads(c) if isinstance(c, str) else c for c in cells.to_numpy(dtype=object)]
    if any(r is None for r in rows):
        raise DataError(
            f"column '{cells.name}': {sum(r is None for r in rows)} row(s) lack a vector"
        )
    lengths = {len(r) for r in rows}
    if dim is not None:
        lengths.add(dim)
    if len(lengths) > 1:
        raise DataError(
            f"column '{cells.name}': vectors must all have one length; found lengths "
            f"{sorted(lengths)}" + (f" (the encoder was fitted on {dim})" if dim else "")
        )
    matrix = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    if not np.isfinite(matrix).all():
        bad = int((~np.isfinite(matrix)).any(axis=1).sum())
        raise DataError(f"column '{cells.name}': {bad} vector(s) hold NaN or inf")
    return np.ascontiguousarray(matrix)


@ENCODERS.register(PrecomputedConfig)
class PrecomputedEncoder(Encoder):
    """Passes the vectors through as float32; `fit` records their length."""

    input_kind: ClassVar[str] = "vector"

    def __init__(self, config: MethodConfig) -> None:
        super().__init__(config)
        self._dim: int | None = None

    def fit(self, frame: pd.DataFrame) -> None:
        """Record the vectors' length."""
        self._dim = stack_vectors(frame.iloc[:, 0]).shape[1]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The column's vectors as a `(n, dim)` float32 matrix."""
        matrix = stack_vectors(frame.iloc[:, 0], self._dim)
        self._dim = matrix.shape[1]
        return matrix

    @property
    def dim(self) -> int:
        """The vectors' length (known after `fit` or `transform`)."""
        if self._dim is None:
            raise RuntimeError("precomputed encoder: dim is known after fit or transform")
        return self._dim

    def save(self, directory: Path) -> None:
        """Write the expected length as JSON."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / STATE).write_text(json.dumps({"dim": self.dim}))

    @classmethod
    def load(cls, config: MethodConfig, directory: Path) -> PrecomputedEncoder:
        """Restore the expected length."""
        encoder = cls(config)
        encoder._dim = int(json.loads((directory / STATE).read_text())["dim"])
        return encoder

    def describe(self) -> dict[str, Any]:
        """meta.json entry."""
        return {"encoder": "precomputed", "dim": self.dim}
