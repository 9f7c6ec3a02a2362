"""The embed stage's library function: dataset + splits -> one feature file per modality.

The dataset is read a batch of rows at a time (`BATCH_ROWS`) and each batch's vectors are
written as they come, so a modality's peak memory is its fitted encoder and one batch; only
an encoder that fits on every train row (TF-IDF, numeric scaling) reads those rows whole,
and only its own columns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from multitune import progress
from multitune.config.data import DataConfig, ModalityConfig
from multitune.data.artifacts import SPLIT_NAMES
from multitune.data.artifacts import arrow_lists as _arrow_lists
from multitune.data.features import (
    META,
    STREAM_ROWS,
    VECTORS,
    encoder_dir,
    feature_path,
    features_table,
    stored_vectors,
    streamed,
)
from multitune.data.ids import ID
from multitune.embed.base import ENCODERS, Encoder
from multitune.embed.token_cache import cache_dir
from multitune.errors import DataError
from multitune.io import atomic_path, write_json

log = logging.getLogger(__name__)


BATCH_ROWS = STREAM_ROWS
"""Rows encoded and written at a time (a multiple of the text encoders' batch of 64)."""


class _Rows:
    """The dataset's rows, from a Parquet file read batch by batch, or from a frame."""

    def __init__(self, source: pd.DataFrame | Path) -> None:
        self.frame = source if isinstance(source, pd.DataFrame) else None
        self.file = None if isinstance(source, pd.DataFrame) else streamed(source)
        self.path = None if isinstance(source, pd.DataFrame) else Path(source)
        if self.frame is not None:
            self.ids = self.frame[ID].astype(str).to_numpy()
        else:
            assert self.file is not None
            self.ids = self.file.read(columns=[ID]).column(ID).to_numpy(zero_copy_only=False)

    def batches(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        """`columns` of consecutive rows, `BATCH_ROWS` at a time (vectors as Arrow data)."""
        if self.frame is not None:
            for start in range(0, len(self.frame), BATCH_ROWS):
                yield self.frame[columns].iloc[start : start + BATCH_ROWS]
            return
        assert self.file is not None
        for batch in self.file.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            yield batch.to_pandas(types_mapper=_arrow_lists)

    def take(self, columns: list[str], rows: np.ndarray) -> pd.DataFrame:
        """`columns` of the rows at sorted positions `rows`, read batch by batch."""
        if self.frame is not None:
            return self.frame[columns].iloc[rows]
        parts, start = [], 0
        for batch in self.batches(columns):
            stop = start + len(batch)
            lo, hi = np.searchsorted(rows, [start, stop])
            if hi > lo:
                parts.append(batch.iloc[rows[lo:hi] - start])
            start = stop
            if hi == len(rows):
                break
        return pd.concat(parts) if parts else pd.DataFrame(columns=columns)

    def whole(self, columns: list[str]) -> pd.DataFrame:
        """`columns` of every row."""
        return self.take(columns, np.arange(len(self.ids)))


def train_rows(ids: np.ndarray, splits: pd.DataFrame) -> np.ndarray:
    """A boolean mask of the train rows among `ids`.

    Raises:
        DataError: some rows have no split (the split is older than the dataset).
    """
    split = pd.Series(ids).map(splits.set_index(splits[ID].astype(str))["split"])
    if split.isna().any():
        raise DataError(
            f"{int(split.isna().sum())} dataset rows have no split; run `dvc repro split`"
        )
    unknown = set(split.unique()) - set(SPLIT_NAMES)
    if unknown:
        raise DataError(f"splits hold unknown split names {sorted(unknown)}")
    return split.eq("train").to_numpy()


def embed(
    dataset: pd.DataFrame | Path, splits: pd.DataFrame, data: DataConfig, out_dir: Path
) -> dict[str, Any]:
    """Encode every modality of `dataset` (`data/dataset.parquet`, or a frame of it) into
    `out_dir` (written whole, atomically).

    Each encoder is fitted on the train rows only, then transforms all rows, a batch at a
    time. `out_dir` gets `<modality>.parquet` (`id`, `vector`, rows in the dataset's order;
    none for an `identity` encoder of the dataset file, whose meta.json entry names the
    dataset's column instead),
    `encoders/<modality>/` (the fitted state), `<modality>.tokens/` for a text modality with
    `cache_top_layers` (see `multitune.embed.token_cache`) and `meta.json`, which is also
    returned. A progress line per modality counts its rows (`multitune.progress`).
    """
    started = time.monotonic()
    rows = _Rows(dataset)
    train = np.flatnonzero(train_rows(rows.ids, splits))
    meta: dict[str, Any] = {}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for i, (name, modality) in enumerate(data.modalities.items(), 1):
            label = f"{name}, {i} of {len(data.modalities)}"
            count = progress.Count("embed", label, len(rows.ids), started_at=started)
            with progress.counting(count):
                meta[name] = _embed_modality(name, modality, rows, train, tmp, out_dir)
                progress.reach(len(rows.ids))
            log.info("embedded %s: %s", name, meta[name])
        write_json(tmp / META, meta)
    return meta


def _embed_modality(
    name: str, modality: ModalityConfig, rows: _Rows, train: np.ndarray, tmp: Path, out_dir: Path
) -> dict[str, Any]:
    """Fit modality `name`'s encoder on the `train` rows and write its outputs under `tmp`
    (the stage's `out_dir` being written); returns its meta.json entry."""
    columns = list(modality.source_columns)
    encoder = ENCODERS.build(modality.encoder)
    encoder.fit(rows.take(columns, train[: encoder.fit_rows]))
    where: dict[str, Any] = {}
    if getattr(modality.encoder, "cache_top_layers", 0):
        out = cache_dir(tmp, name)
        where = {"token_cache": _write_with_cache(encoder, rows, columns, tmp, name)}
        where["token_cache"]["path"] = out.name
    elif encoder.identity and rows.path is not None:
        # The dataset's column is the only copy: ingest stored it checked, float32.
        where = {VECTORS: stored_vectors(rows.path, columns[0], out_dir)}
    else:
        _write_vectors(encoder, rows, columns, feature_path(tmp, name))
    encoder.save(encoder_dir(tmp, name))
    meta = encoder.describe() | {"rows": len(rows.ids), "fitted_on": "train"} | where
    if hasattr(encoder, "over_window"):
        meta |= _over_window(name, encoder, rows, columns, where)
    return meta


def _over_window(
    name: str, encoder: Encoder, rows: _Rows, columns: list[str], where: dict[str, Any]
) -> dict[str, int]:
    """How many texts exceed the text encoder's window, said once in the stage's log:
    their pooled vectors (sequence tasks) read the first window; with cached token states,
    token tasks read every word through overlapping windows."""
    cache = where.get("token_cache")
    window = int(encoder.model.max_seq_length)  # type: ignore[attr-defined]
    over = cache["texts_over_window"] if cache else encoder.over_window(rows.whole(columns))  # type: ignore[attr-defined]
    if over:
        words = (
            f"token tasks read every word (overlapping windows, stride {cache['stride']})"
            if cache
            else "token tasks would need encoder.cache_top_layers"
        )
        log.warning(
            "%s: %d of %d texts are longer than the encoder's %d-token window: sequence tasks "
            "read their first window (truncated); %s",
            name,
            over,
            len(rows.ids),
            window,
            words,
        )
    return {"window": window, "texts_over_window": int(over)}


def _write_with_cache(
    encoder: Encoder, rows: _Rows, columns: list[str], tmp: Path, name: str
) -> dict[str, Any]:
    """A text modality that caches token states: one encoder pass writes the cache and the
    pooled vectors (through a memory-mapped scratch file, so memory stays at one batch);
    returns the cache's description."""
    scratch = tmp / f".{name}.vectors.npy"
    vectors = np.lib.format.open_memmap(
        scratch, mode="w+", dtype=np.float32, shape=(len(rows.ids), encoder.dim)
    )
    try:
        info: dict[str, Any] = encoder.write_token_cache(  # type: ignore[attr-defined]
            rows.whole(columns), rows.ids, cache_dir(tmp, name), vectors=vectors
        )
        tables = (
            features_table(rows.ids[s : s + BATCH_ROWS], np.asarray(vectors[s : s + BATCH_ROWS]))
            for s in range(0, len(rows.ids), BATCH_ROWS)
        )
        _write_table(feature_path(tmp, name), tables, rows.ids[:0], encoder.dim)
    finally:
        del vectors
        scratch.unlink()
    return info


def _write_table(path: Path, tables: Iterator[pa.Table], no_ids: np.ndarray, dim: int) -> None:
    """Write `tables` one after another into one Parquet file (an empty one if none)."""
    writer: pq.ParquetWriter | None = None
    try:
        for table in tables:
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:  # no rows: still a (empty) feature file
        pq.write_table(features_table(no_ids, np.zeros((0, dim), np.float32)), path)


def _write_vectors(encoder: Encoder, rows: _Rows, columns: list[str], path: Path) -> None:
    """Encode `rows` batch by batch into the feature file at `path`."""

    def tables() -> Iterator[pa.Table]:
        start = 0
        for batch in rows.batches(columns):
            yield features_table(rows.ids[start : start + len(batch)], encoder.transform(batch))
            start += len(batch)
            progress.reach(start)  # an encoder that counts its own parts went ahead

    _write_table(path, tables(), rows.ids[:0], encoder.dim)
