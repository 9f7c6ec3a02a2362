"""Cached token states of a text modality: the hidden states entering the top `k` layers.

With them, training runs (and fine-tunes) only the top layers of the pretrained transformer
instead of the whole model every step (`multitune.models.backbone`).

Layout of `data/features/<modality>.tokens/`:

* `states.npy`: float16 `(total_tokens, hidden)`, every row's tokens packed row after row;
* `final.npy`: float16, packed the same way: the states leaving the top layer (the encoder's
  final token states), what a step reads where no layer trains (a frozen backbone under a
  token task), so the cached layers never run again for it;
* `offsets.npy`: int64 `(rows + 1,)`; row `i` holds `states[offsets[i]:offsets[i + 1]]`;
* `segments.npy`: int64 `(windows + 1,)`, the windows' bounds in the same packed positions
  (every row bound is one). A text longer than the encoder's window (`max_seq_length`
  tokens) is encoded as overlapping windows, `stride` tokens shared by neighbours, each with
  its own special tokens; a row holds its windows one after another. This is the attention
  mask in packed form: a token attends to exactly its own window's tokens;
* `words.npy`: int32 `(total_tokens,)`, for the first sub-word token of each whitespace-
  separated word the word's index in its text, -1 for the other tokens (token tasks). A word
  inside two windows is labelled once, in the window where it has the most context (the
  farthest from that window's edges), so every word of every text counts exactly once;
* `ids.parquet`: the row ids, in the order of `offsets`;
* `cache.json`: layers cached, the transformer's config, its pooling, sizes.

Written by `multitune.embed.token_pass.write_token_cache` (texts cut into windows by
`multitune.embed.windows`); read back here (`TokenCache`), with the packing helpers both use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from multitune.errors import DataError

STATES, FINAL, OFFSETS, SEGMENTS, WORDS, IDS, INFO = (
    "states.npy",
    "final.npy",
    "offsets.npy",
    "segments.npy",
    "words.npy",
    "ids.parquet",
    "cache.json",
)
DTYPE = np.float16


def cache_dir(features_dir: str | Path, modality: str) -> Path:
    """Where a modality's token cache lives."""
    return Path(features_dir) / f"{modality}.tokens"


def packed_offsets(lengths: np.ndarray) -> np.ndarray:
    """Row offsets `(n + 1,)` of packed rows with these token counts."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def runs(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """`starts[j], starts[j] + 1, ..., starts[j] + lengths[j] - 1` for each j, concatenated:
    the packed positions of runs (a batch's rows, a row's windows) given their starts."""
    lengths = np.asarray(lengths, dtype=np.int64)
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(np.asarray(starts, dtype=np.int64), lengths) + within  # type: ignore[no-any-return]


@dataclass(frozen=True)
class TokenCache:
    """A token cache read back: memory-mapped states (entering the cached layers, and leaving
    them where the cache holds them), offsets, window bounds and ids, plus its description."""

    states: np.ndarray
    offsets: np.ndarray
    words: np.ndarray
    ids: np.ndarray
    info: dict[str, Any]
    final: np.ndarray | None = None
    segments: np.ndarray | None = None

    @classmethod
    def read(cls, directory: Path) -> TokenCache:
        """Open the cache in `directory` (the states stay on disk until sliced).

        Raises:
            DataError: the cache is missing (run `dvc repro embed`).
        """
        if not (directory / INFO).exists():
            raise DataError(f"{directory}: no token cache; run `dvc repro embed`")
        states = np.load(directory / STATES, mmap_mode="r")
        offsets = np.load(directory / OFFSETS)
        words = np.load(directory / WORDS)
        ids = pq.read_table(directory / IDS).column("id").to_numpy(zero_copy_only=False)
        info = json.loads((directory / INFO).read_text())
        final = np.load(directory / FINAL, mmap_mode="r") if (directory / FINAL).exists() else None
        segments = np.load(directory / SEGMENTS) if (directory / SEGMENTS).exists() else None
        return cls(states, offsets, words, ids, info, final, segments)

    def aligned(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`(states, offsets, words)` with rows in the order of `ids` (states in float16);
        `aligned_segments(ids)` gives their windows.

        When `ids` are the cache's own rows in its order (as the embed stage writes it for
        the dataset), the states are the memory-mapped file itself, read-only: pages load as
        batches touch them and are shared by every process that maps the file. Otherwise
        the rows are packed anew in memory.

        Raises:
            DataError: some of `ids` are not in the cache.
        """
        rows = self._rows(ids)
        if rows is None:
            return self.states, self.offsets, self.words
        source, offsets = self._tokens(rows)
        return np.ascontiguousarray(self.states[source]), offsets, self.words[source]

    def aligned_segments(self, ids: np.ndarray) -> np.ndarray:
        """The window bounds of the rows of `aligned(ids)` (one window a row in a cache
        written before windows)."""
        segments = self.offsets if self.segments is None else self.segments
        rows = self._rows(ids)
        if rows is None:
            return segments
        first = np.searchsorted(segments, self.offsets[rows])
        counts = np.searchsorted(segments, self.offsets[rows + 1]) - first
        window = runs(first, counts)
        return packed_offsets(segments[window + 1] - segments[window])

    def aligned_final(self, ids: np.ndarray) -> np.ndarray | None:
        """The final token states, packed as `aligned(ids)` packs the states entering the
        layers (the memory-mapped file itself in the cache's own order); None when the cache
        holds none (written before they were cached)."""
        if self.final is None:
            return None
        rows = self._rows(ids)
        if rows is None:
            return self.final
        return np.ascontiguousarray(self.final[self._tokens(rows)[0]])

    def _rows(self, ids: np.ndarray) -> np.ndarray | None:
        """The cache's row of each of `ids`; None when `ids` are its rows in its order.

        Raises:
            DataError: some of `ids` are not in the cache.
        """
        wanted = pa.array(np.asarray(ids, dtype=object), type=pa.string())
        index = pc.index_in(wanted, value_set=pa.array(self.ids, type=pa.string()))
        if index.null_count:
            raise DataError(
                f"{index.null_count} row id(s) have no cached token states; run `dvc repro embed`"
            )
        rows = index.to_numpy(zero_copy_only=False).astype(np.int64)
        return None if np.array_equal(rows, np.arange(len(self.ids))) else rows

    def _tokens(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`(where each token of `rows` lies in the cache, the offsets of `rows` packed)`."""
        lens = self.offsets[rows + 1] - self.offsets[rows]
        return runs(self.offsets[rows], lens), packed_offsets(lens)
