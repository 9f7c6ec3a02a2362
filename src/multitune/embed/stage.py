"""The embed stage's library function: dataset + splits -> one feature file per modality."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from multitune.config.data import DataConfig
from multitune.data.artifacts import SPLIT_NAMES
from multitune.data.features import META, encoder_dir, feature_path, features_table
from multitune.data.ids import ID
from multitune.embed.base import ENCODERS
from multitune.embed.token_cache import cache_dir
from multitune.errors import DataError
from multitune.io import atomic_path, write_json

log = logging.getLogger(__name__)


def train_rows(frame: pd.DataFrame, splits: pd.DataFrame) -> pd.Series:
    """A boolean mask of `frame`'s train rows.

    Raises:
        DataError: some rows have no split (the split is older than the dataset).
    """
    split = frame[ID].map(splits.set_index(ID)["split"])
    if split.isna().any():
        raise DataError(
            f"{int(split.isna().sum())} dataset rows have no split; run `dvc repro split`"
        )
    unknown = set(split.unique()) - set(SPLIT_NAMES)
    if unknown:
        raise DataError(f"splits hold unknown split names {sorted(unknown)}")
    return split.eq("train")


def embed(
    frame: pd.DataFrame, splits: pd.DataFrame, data: DataConfig, out_dir: Path
) -> dict[str, Any]:
    """Encode every modality of `frame` into `out_dir` (written whole, atomically).

    Each encoder is fitted on the train rows only, then transforms all rows. `out_dir` gets
    `<modality>.parquet` (`id`, `vector`), `encoders/<modality>/` (the fitted state),
    `<modality>.tokens/` for a text modality with `cache_top_layers` (see
    `multitune.embed.token_cache`) and `meta.json`, which is also returned.
    """
    is_train = train_rows(frame, splits).to_numpy()
    meta: dict[str, Any] = {}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for name, modality in data.modalities.items():
            source = frame[modality.source_columns]
            encoder = ENCODERS.build(modality.encoder)
            if encoder.fit_rows is None:
                encoder.fit(source[is_train])
            else:  # an encoder that needs only a few rows to fit: no copy of the train rows
                encoder.fit(source.iloc[np.flatnonzero(is_train)[: encoder.fit_rows]])
            vectors = encoder.transform(source)
            pq.write_table(features_table(frame[ID].to_numpy(), vectors), feature_path(tmp, name))
            encoder.save(encoder_dir(tmp, name))
            meta[name] = encoder.describe() | {"rows": len(frame), "fitted_on": "train"}
            if getattr(modality.encoder, "cache_top_layers", 0):
                out = cache_dir(tmp, name)
                meta[name]["token_cache"] = encoder.write_token_cache(  # type: ignore[attr-defined]
                    source, frame[ID].to_numpy(), out
                ) | {"path": out.name}
            log.info("embedded %s: %s", name, meta[name])
        write_json(tmp / META, meta)
    return meta
