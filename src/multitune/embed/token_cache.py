"""Cached token states of a text modality: the hidden states entering the top `k` layers.

With them, training runs (and fine-tunes) only the top layers of the pretrained transformer
instead of the whole model every step (`multitune.models.backbone`).

Layout of `data/features/<modality>.tokens/`:

* `states.npy`: float16 `(total_tokens, hidden)`, every row's tokens packed row after row;
* `final.npy`: float16, packed the same way: the states leaving the top layer (the encoder's
  final token states), what a step reads where no layer trains (a frozen backbone under a
  token task), so the cached layers never run again for it;
* `offsets.npy`: int64 `(rows + 1,)`; row `i` holds `states[offsets[i]:offsets[i + 1]]`. This
  is the attention mask in packed form: a row attends to exactly its own tokens;
* `words.npy`: int32 `(total_tokens,)`, for the first sub-word token of each whitespace-
  separated word the word's index in its text, -1 for the other tokens (token tasks);
* `ids.parquet`: the row ids, in the order of `offsets`;
* `cache.json`: layers cached, the transformer's config, its pooling, sizes.

Rows are computed in length-sorted batches and written into memory-mapped `.npy` files, so
memory stays at one batch of states however large the table. One encoder pass per text gives
the cached states, the final states and, where asked, the pooled sentence vectors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from multitune.errors import DataError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

STATES, FINAL, OFFSETS, WORDS, IDS, INFO = (
    "states.npy",
    "final.npy",
    "offsets.npy",
    "words.npy",
    "ids.parquet",
    "cache.json",
)
DTYPE = np.float16


def cache_dir(features_dir: str | Path, modality: str) -> Path:
    """Where a modality's token cache lives."""
    return Path(features_dir) / f"{modality}.tokens"


def _transformer(model: SentenceTransformer) -> Any:
    """The Hugging Face model inside the sentence-transformers model's first module."""
    return model[0].auto_model


def backbone_info(model: SentenceTransformer, layers: int) -> dict[str, Any]:
    """What the top layers need to be rebuilt: transformer config, layers cached, pooling.

    Raises:
        DataError: the model is not a transformer followed by mean pooling, or has fewer than
            `layers` layers.
    """
    kinds = [type(m).__name__ for m in model]
    if kinds[:2] != ["Transformer", "Pooling"] or getattr(model[1], "pooling_mode", None) != (
        "mean"
    ):
        raise DataError(
            "cache_top_layers needs a sentence-transformers model made of a Transformer and "
            f"mean Pooling (this one: {' -> '.join(kinds)})"
        )
    config = _transformer(model).config
    total = int(config.num_hidden_layers)
    if layers > total:
        raise DataError(f"cache_top_layers is {layers}, but the model has {total} layers")
    return {
        "layers": layers,
        "model_layers": total,
        "hidden": int(config.hidden_size),
        "normalize": "Normalize" in kinds[2:],
        "transformer_config": config.to_dict(),
    }


def word_index(model: SentenceTransformer, texts: list[str]) -> np.ndarray:
    """Packed int32 per token of `texts`: the index of the whitespace-separated word whose
    first sub-word token it is, else -1 (special tokens, later sub-words)."""
    encoded = model.tokenizer(
        texts,
        truncation=True,
        max_length=model.max_seq_length,
        return_offsets_mapping=True,
        return_attention_mask=False,
    )
    out = []
    for text, spans in zip(texts, encoded["offset_mapping"], strict=True):
        starts = np.array([m.start() for m in re.finditer(r"\S+", text)], dtype=np.int64)
        spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
        special = spans[:, 1] <= spans[:, 0]
        word = np.where(special, -1, np.searchsorted(starts, spans[:, 0], side="right") - 1)
        first = np.r_[True, word[1:] != word[:-1]]
        out.append(np.where(first & (word >= 0), word, -1).astype(np.int32))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int32)


@dataclass(frozen=True)
class _Batch:
    """One length-sorted batch of an encoder pass: its rows (text positions), their token
    counts, and per token, packed row after row, the states entering the top `layers` layers
    and leaving the last; the pooled sentence vectors where asked."""

    rows: np.ndarray
    lengths: np.ndarray
    states: np.ndarray
    final: np.ndarray | None
    pooled: np.ndarray | None


def _batches(
    model: SentenceTransformer,
    texts: list[str],
    layers: int,
    batch_size: int,
    final: bool = False,
    pooled: bool = False,
) -> Iterator[_Batch]:
    """The encoder pass over `texts`, longest first, a batch at a time."""
    import torch

    from multitune.embed._batches import finish, token_lengths

    order = np.argsort(-token_lengths(model, texts), kind="stable")
    transformer = _transformer(model)
    model.eval()
    for start in range(0, len(texts), batch_size):
        rows = order[start : start + batch_size]
        features = model.preprocess([texts[i] for i in rows])
        inputs = {
            k: v.to(model.device)
            for k, v in features.items()
            if k in ("input_ids", "attention_mask", "token_type_ids")
        }
        with torch.inference_mode():
            hidden = transformer(**inputs, output_hidden_states=True).hidden_states
        mask = inputs["attention_mask"].bool()
        entering = hidden[-(layers + 1)][mask].float().cpu().numpy()  # layer L - layers
        last = hidden[-1].float().cpu().numpy() if final or pooled else None  # the model's
        # token embeddings, pooled below as `encode_sorted` pools them
        yield _Batch(
            rows,
            mask.sum(1).cpu().numpy(),
            entering,
            None if last is None or not final else last[mask.cpu().numpy()],
            None if last is None or not pooled else finish(model, last, features),
        )


def write_token_cache(
    model: SentenceTransformer,
    texts: list[str],
    ids: np.ndarray,
    layers: int,
    out_dir: Path,
    model_dir: str,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
    vectors: np.ndarray | None = None,
) -> dict[str, Any]:
    """Compute and write the cache of `texts` (rows in the order of `ids`) to `out_dir`.

    `model_dir` (the model's directory) is recorded: fine-tuning starts from its weights.

    Args:
        vectors: a writable `(len(texts), dim)` float32 array (a memory map, say): filled
            with the texts' pooled sentence vectors from the same encoder pass, equal to
            `encode_sorted`'s in PyTorch with the same `batch_size`.

    Returns:
        The cache's description (also in `cache.json`): layers, tokens, bytes, dtype.
    """
    from multitune.embed._batches import token_lengths

    info = backbone_info(model, layers)
    lengths = token_lengths(model, texts)
    offsets = _offsets(lengths)
    out_dir.mkdir(parents=True)
    shape = (int(offsets[-1]), info["hidden"])
    states = np.lib.format.open_memmap(out_dir / STATES, mode="w+", dtype=DTYPE, shape=shape)
    final = np.lib.format.open_memmap(out_dir / FINAL, mode="w+", dtype=DTYPE, shape=shape)
    pooled = vectors is not None
    for batch in _batches(model, texts, layers, batch_size, final=True, pooled=pooled):
        if not np.array_equal(batch.lengths, lengths[batch.rows]):
            raise RuntimeError("tokenizer lengths differ between passes")  # a bug, not input
        where = _destinations(offsets, batch.rows, batch.lengths)
        states[where] = batch.states
        final[where] = batch.final
        if vectors is not None:
            vectors[batch.rows] = batch.pooled
        if progress is not None:
            progress(len(batch.rows))
    for written in (states, final):
        written.flush()
    del states, final
    np.save(out_dir / OFFSETS, offsets)
    words = word_index(model, texts)
    if len(words) != offsets[-1]:
        raise RuntimeError("tokenizer lengths differ between passes")
    np.save(out_dir / WORDS, words)
    pq.write_table(pa.table({"id": pa.array(list(ids), type=pa.string())}), out_dir / IDS)
    size = sum(f.stat().st_size for f in out_dir.iterdir())
    info |= {
        "model": model_dir,
        "rows": len(texts),
        "tokens": int(offsets[-1]),
        "dtype": np.dtype(DTYPE).name,
        "bytes": size,
    }
    (out_dir / INFO).write_text(json.dumps(info, indent=2))
    return {k: v for k, v in info.items() if k != "transformer_config"}


def token_states(
    model: SentenceTransformer, texts: list[str], layers: int, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """The same states for `texts`, in memory (serving): `(float32 states, offsets)`; the
    word of each token is `word_index(model, texts)`."""
    from multitune.embed._batches import token_lengths

    lengths = token_lengths(model, texts)
    offsets = _offsets(lengths)
    hidden = int(_transformer(model).config.hidden_size)
    states = np.empty((int(offsets[-1]), hidden), dtype=np.float32)
    for batch in _batches(model, texts, layers, batch_size):
        states[_destinations(offsets, batch.rows, batch.lengths)] = batch.states
    return states, offsets


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """Row offsets `(n + 1,)` of packed rows with these token counts."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def _destinations(offsets: np.ndarray, rows: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Packed positions of a batch's tokens: row `rows[j]`'s `lens[j]` tokens, in order."""
    starts = np.repeat(offsets[rows], lens)
    within = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    return starts + within  # type: ignore[no-any-return]


@dataclass(frozen=True)
class TokenCache:
    """A token cache read back: memory-mapped states (entering the cached layers, and leaving
    them where the cache holds them), offsets and ids, plus its description."""

    states: np.ndarray
    offsets: np.ndarray
    words: np.ndarray
    ids: np.ndarray
    info: dict[str, Any]
    final: np.ndarray | None = None

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
        return cls(states, offsets, words, ids, info, final)

    def aligned(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`(states, offsets, words)` with rows in the order of `ids` (states in float16).

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
        return _destinations(self.offsets, rows, lens), _offsets(lens)
