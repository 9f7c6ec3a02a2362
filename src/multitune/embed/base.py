"""The encoder interface: one modality's source column(s) -> fixed-size float32 vectors."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import pandas as pd

from multitune.config.data import ModalityConfig
from multitune.config.methods.encoders import EncoderMethod
from multitune.data.features import encoder_dir
from multitune.registry import MethodConfig, Registry


class Encoder(ABC):
    """Turns a modality's source columns into one float32 vector per row.

    Contract:
      * ``fit(frame)`` is called once, on train rows only (a no-op for pretrained encoders);
        on the first ``fit_rows`` of them when that is set (the stage then copies no more).
      * ``transform(frame)`` returns a C-contiguous ``float32`` array of shape
        ``(len(frame), dim)``, rows in the frame's order, all values finite; it may be a
        read-only view of the frame's (Arrow) data.
      * ``save(directory)`` writes the fitted state in safe formats (JSON, ``.npy``,
        safetensors; never pickle), and ``load(config, directory)`` restores an encoder whose
        ``transform`` gives the same vectors. The served model carries this directory.
      * ``describe()`` returns what meta.json records (encoder name, version or path, dim).

    `frame` holds exactly the modality's source columns.
    """

    fit_rows: ClassVar[int | None] = None
    """The train rows `fit` needs at most (None: all)."""

    identity: ClassVar[bool] = False
    """`transform` returns its one column's values unchanged: the vectors ingest stored in
    `data/dataset.parquet` (checked, float32). The embed stage then writes no second copy
    of them; meta.json names that column instead (see `multitune.data.features`)."""

    def __init__(self, config: MethodConfig) -> None:
        self.config = config

    @property
    def input_kind(self) -> str:
        """What it reads: `text`, `numeric` or `vector` (its config's `input_kind`)."""
        return str(getattr(self.config, "input_kind", "text"))

    def fit(self, frame: pd.DataFrame) -> None:  # noqa: B027 - optional hook
        """Fit whatever the encoder learns from data. Train rows only."""

    @abstractmethod
    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode rows of `frame` to a `(n, dim)` float32 matrix."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Output dimension."""

    def save(self, directory: Path) -> None:  # noqa: B027 - stateless encoders save nothing
        """Write the fitted state under `directory`."""

    @classmethod
    def load(cls, config: MethodConfig, directory: Path) -> Encoder:
        """Rebuild a fitted encoder from `save`'s output."""
        return cls(config)

    def describe(self) -> dict[str, Any]:
        """What meta.json records about this encoder."""
        return {"encoder": self.config.name, "dim": self.dim}


ENCODERS: Registry[Encoder] = Registry("encoder", EncoderMethod)


def load_encoder(
    features_dir: str | os.PathLike[str], modality: str, modality_config: ModalityConfig
) -> Encoder:
    """Rebuild the fitted encoder the embed stage used for `modality` (to encode raw rows)."""
    config = cast(MethodConfig, modality_config.encoder)
    return ENCODERS.get(config.name).load(config, encoder_dir(features_dir, modality))
