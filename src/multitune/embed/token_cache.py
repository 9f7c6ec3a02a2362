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

Rows are computed in length-sorted batches and written into memory-mapped `.npy` files, so
memory stays at one batch of states however large the table. One encoder pass per text gives
the cached states, the final states and, where asked, the pooled sentence vectors (those
of a text's first window: the encoder's truncated vector, as without windows).
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


@dataclass(frozen=True)
class Windows:
    """Texts cut into the encoder's windows of at most `max_seq_length` tokens.

    A text that fits is one window, tokenized exactly as the encoder tokenizes it. A longer
    one is several, `stride` tokens shared by neighbours (the tokenizer's overflowing
    tokens), each with its own special tokens.

    Attributes:
        input_ids: Each window's token ids, windows text after text, in order.
        text: `(W,)` int64: the text each window belongs to.
        words: Packed int32 per token of every window: the index of the whitespace-separated
            word whose first sub-word token it is, in the one window that labels the word;
            else -1 (special tokens, later sub-words, a word another window labels).
        window: The window size in tokens.
        stride: Tokens shared by neighbouring windows.
        counts: `(texts,)` each text's whitespace-separated words (a word the tokenizer
            gives no token, a lone zero-width character say, is counted but not labelled).
    """

    input_ids: list[list[int]]
    text: np.ndarray
    words: np.ndarray
    window: int
    stride: int
    counts: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        """`(W,)` tokens per window."""
        return np.fromiter(map(len, self.input_ids), dtype=np.int64, count=len(self.input_ids))

    @property
    def segments(self) -> np.ndarray:
        """`(W + 1,)` the windows' bounds in packed token positions."""
        return _offsets(self.lengths)

    def offsets(self, n_texts: int) -> np.ndarray:
        """`(n_texts + 1,)` each text's bounds in packed token positions (all its windows)."""
        return _offsets(
            np.bincount(self.text, weights=self.lengths, minlength=n_texts).astype(np.int64)
        )

    @property
    def first(self) -> np.ndarray:
        """`(W,)` bool: whether a window is its text's first (the one that is pooled)."""
        return (
            np.r_[True, self.text[1:] != self.text[:-1]] if len(self.text) else np.zeros(0, bool)
        )

    @property
    def over(self) -> int:
        """How many texts exceed one window."""
        return int((np.bincount(self.text) > 1).sum()) if len(self.text) else 0


def windows(model: SentenceTransformer, texts: list[str], stride: int | None = None) -> Windows:
    """Cut `texts` into the model's windows (see `Windows`).

    Raises:
        DataError: the window is longer than the model reads, or `stride` leaves no new
            token per window.
    """
    window = int(model.max_seq_length or model.tokenizer.model_max_length)
    positions = getattr(_transformer(model).config, "max_position_embeddings", None)
    if positions is not None and window > positions:
        raise DataError(
            f"encoder.window is {window}, but the model reads at most {positions} tokens: "
            f"set encoder.window to {positions} or less"
        )
    room = window - model.tokenizer.num_special_tokens_to_add()
    stride = window // 4 if stride is None else stride
    if not 0 <= stride < room:
        raise DataError(
            f"encoder.stride is {stride}, but a window holds {room} text tokens "
            f"(window {window}): set encoder.stride from 0 to {room - 1}"
        )
    if not texts:
        none = np.zeros(0, np.int64)
        return Windows([], none, np.zeros(0, np.int32), window, stride, none)
    encoded = model.tokenizer(
        texts,
        truncation=True,
        max_length=window,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    text = np.asarray(encoded["overflow_to_sample_mapping"], dtype=np.int64)
    starts = [np.array([m.start() for m in re.finditer(r"\S+", t)], np.int64) for t in texts]
    word, score = [], []
    for t, spans in zip(text, encoded["offset_mapping"], strict=True):
        spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
        special = spans[:, 1] <= spans[:, 0]
        w = np.where(special, -1, np.searchsorted(starts[t], spans[:, 0], side="right") - 1)
        first = np.r_[True, w[1:] != w[:-1]] & (w >= 0)
        word.append(np.where(first, w, -1))
        pos = np.arange(len(w))
        content = np.flatnonzero(~special)
        lo, hi = (content[0], content[-1]) if len(content) else (0, 0)
        score.append(np.minimum(pos - lo, hi - pos))  # context on the nearer side
    lengths = np.fromiter(map(len, word), dtype=np.int64, count=len(word))
    words = np.concatenate(word)
    candidate = np.flatnonzero(words >= 0)
    owner = np.repeat(np.arange(len(word)), lengths)[candidate]
    key_text = text[owner]
    # Per (text, word): the candidate with the most context; ties to the earlier window.
    order = np.lexsort((owner, -np.concatenate(score)[candidate], words[candidate], key_text))
    ranked = candidate[order]
    keep = np.ones(len(ranked), dtype=bool)  # the first of each (text, word)
    keep[1:] = (np.diff(key_text[order]) != 0) | (np.diff(words[ranked]) != 0)
    labelled = np.full(len(words), -1, dtype=np.int32)
    labelled[ranked[keep]] = words[ranked[keep]]
    counts = np.fromiter(map(len, starts), dtype=np.int64, count=len(starts))
    return Windows(list(encoded["input_ids"]), text, labelled, window, stride, counts)


@dataclass(frozen=True)
class _Batch:
    """One length-sorted batch of an encoder pass: its windows, their token counts, and per
    token, packed window after window, the states entering the top `layers` layers and
    leaving the last; the windows' pooled sentence vectors where asked."""

    rows: np.ndarray
    lengths: np.ndarray
    states: np.ndarray
    final: np.ndarray | None
    pooled: np.ndarray | None


def _batches(
    model: SentenceTransformer,
    cut: Windows,
    layers: int,
    batch_size: int,
    final: bool = False,
    pooled: bool = False,
) -> Iterator[_Batch]:
    """The encoder pass over the windows in `cut`, longest first, a batch at a time."""
    import torch

    from multitune.embed._batches import finish

    lengths = cut.lengths
    order = np.argsort(-lengths, kind="stable")
    transformer = _transformer(model)
    pad = model.tokenizer.pad_token_id or 0
    model.eval()
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = int(lengths[rows].max())
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        for j, w in enumerate(rows):
            ids[j, : lengths[w]] = torch.as_tensor(cut.input_ids[w])
        mask = torch.arange(width) < torch.from_numpy(lengths[rows]).unsqueeze(1)
        features = {"input_ids": ids, "attention_mask": mask.long()}
        if "token_type_ids" in model.tokenizer.model_input_names:
            features["token_type_ids"] = torch.zeros_like(ids)
        inputs = {k: v.to(model.device) for k, v in features.items()}
        with torch.inference_mode():
            hidden = transformer(**inputs, output_hidden_states=True).hidden_states
        entering = hidden[-(layers + 1)][mask.to(model.device)].float().cpu().numpy()
        last = hidden[-1].float().cpu().numpy() if final or pooled else None  # the model's
        # token embeddings, pooled below as `encode_sorted` pools them
        yield _Batch(
            rows,
            lengths[rows],
            entering,
            None if last is None or not final else last[mask.numpy()],
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
    stride: int | None = None,
) -> dict[str, Any]:
    """Compute and write the cache of `texts` (rows in the order of `ids`) to `out_dir`.

    `model_dir` (the model's directory) is recorded: fine-tuning starts from its weights.

    Args:
        vectors: a writable `(len(texts), dim)` float32 array (a memory map, say): filled
            with the texts' pooled sentence vectors from the same encoder pass (each text's
            first window), equal to `encode_sorted`'s in PyTorch with the same `batch_size`.
        stride: Tokens shared by neighbouring windows of a text longer than one (None: a
            quarter of the window).

    Returns:
        The cache's description (also in `cache.json`): layers, tokens, bytes, dtype, and
        the texts longer than one window.
    """
    info = backbone_info(model, layers)
    cut = windows(model, texts, stride)
    offsets, segments = cut.offsets(len(texts)), cut.segments
    out_dir.mkdir(parents=True)
    shape = (int(offsets[-1]), info["hidden"])
    states = np.lib.format.open_memmap(out_dir / STATES, mode="w+", dtype=DTYPE, shape=shape)
    final = np.lib.format.open_memmap(out_dir / FINAL, mode="w+", dtype=DTYPE, shape=shape)
    first = cut.first
    for batch in _batches(model, cut, layers, batch_size, final=True, pooled=vectors is not None):
        where = runs(segments[batch.rows], batch.lengths)
        states[where] = batch.states
        final[where] = batch.final
        if vectors is not None and batch.pooled is not None:
            pooled = first[batch.rows]
            vectors[cut.text[batch.rows[pooled]]] = batch.pooled[pooled]
        if progress is not None:
            progress(int(first[batch.rows].sum()))
    for written in (states, final):
        written.flush()
    del states, final
    np.save(out_dir / OFFSETS, offsets)
    np.save(out_dir / SEGMENTS, segments)
    np.save(out_dir / WORDS, cut.words)
    pq.write_table(pa.table({"id": pa.array(list(ids), type=pa.string())}), out_dir / IDS)
    size = sum(f.stat().st_size for f in out_dir.iterdir())
    info |= {
        "model": model_dir,
        "rows": len(texts),
        "tokens": int(offsets[-1]),
        "dtype": np.dtype(DTYPE).name,
        "bytes": size,
        "window": cut.window,
        "stride": cut.stride,
        "windows": len(cut.text),
        "texts_over_window": cut.over,
    }
    (out_dir / INFO).write_text(json.dumps(info, indent=2))
    return {k: v for k, v in info.items() if k != "transformer_config"}


@dataclass(frozen=True)
class TokenArrays:
    """Token states of some texts, in memory (serving): packed as the cache packs them.

    Attributes:
        states: `(tokens, H)` float32, entering the top layers.
        offsets: `(texts + 1,)` each text's bounds.
        segments: `(windows + 1,)` each window's bounds.
        words: `(tokens,)` int32, the word each token labels (`Windows.words`).
        counts: `(texts,)` each text's words (`Windows.counts`).
    """

    states: np.ndarray
    offsets: np.ndarray
    segments: np.ndarray
    words: np.ndarray
    counts: np.ndarray


def token_states(
    model: SentenceTransformer,
    texts: list[str],
    layers: int,
    batch_size: int = 64,
    stride: int | None = None,
) -> TokenArrays:
    """The cache's states of `texts`, every window of them, in memory (serving)."""
    cut = windows(model, texts, stride)
    offsets, segments = cut.offsets(len(texts)), cut.segments
    hidden = int(_transformer(model).config.hidden_size)
    states = np.empty((int(offsets[-1]), hidden), dtype=np.float32)
    for batch in _batches(model, cut, layers, batch_size):
        states[runs(segments[batch.rows], batch.lengths)] = batch.states
    return TokenArrays(states, offsets, segments, cut.words, cut.counts)


def _offsets(lengths: np.ndarray) -> np.ndarray:
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
        return _offsets(segments[window + 1] - segments[window])

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
        return runs(self.offsets[rows], lens), _offsets(lens)
