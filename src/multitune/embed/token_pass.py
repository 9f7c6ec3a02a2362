"""The encoder pass over texts' windows: the token states entering the top `k` layers of
the pretrained transformer (and leaving the last), written to a token cache
(`write_token_cache`, layout in `multitune.embed.token_cache`) or kept in memory for serving
(`token_states`).

Rows are computed in length-sorted batches and written into memory-mapped `.npy` files, so
memory stays at one batch of states however large the table. One encoder pass per text gives
the cached states, the final states and, where asked, the pooled sentence vectors (those
of a text's first window: the encoder's truncated vector, as without windows).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from multitune.embed._batches import finish
from multitune.embed.token_cache import (
    DTYPE,
    FINAL,
    IDS,
    INFO,
    OFFSETS,
    SEGMENTS,
    STATES,
    WORDS,
    runs,
)
from multitune.embed.windows import Windows, auto_model, windows
from multitune.errors import DataError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


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
    config = auto_model(model).config
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
    import torch  # with the encoder: the embed stage's other encoders start without torch

    lengths = cut.lengths
    order = np.argsort(-lengths, kind="stable")
    transformer = auto_model(model)
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
    hidden = int(auto_model(model).config.hidden_size)
    states = np.empty((int(offsets[-1]), hidden), dtype=np.float32)
    for batch in _batches(model, cut, layers, batch_size):
        states[runs(segments[batch.rows], batch.lengths)] = batch.states
    return TokenArrays(states, offsets, segments, cut.words, cut.counts)
