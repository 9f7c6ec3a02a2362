"""Texts cut into the encoder's windows: the token ids an encoder pass reads, and which token
labels which word.

A text longer than the encoder's window (`max_seq_length` tokens) is cut into overlapping
windows, `stride` tokens shared by neighbours, each with its own special tokens; a word
inside two windows is labelled once, in the window where it has the most context (see the
layout in `multitune.embed.token_cache`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from multitune.embed.token_cache import packed_offsets
from multitune.errors import DataError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def auto_model(model: SentenceTransformer) -> Any:
    """The Hugging Face model inside the sentence-transformers model's first module."""
    return model[0].auto_model


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
        return packed_offsets(self.lengths)

    def offsets(self, n_texts: int) -> np.ndarray:
        """`(n_texts + 1,)` each text's bounds in packed token positions (all its windows)."""
        return packed_offsets(
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
    positions = getattr(auto_model(model).config, "max_position_embeddings", None)
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
