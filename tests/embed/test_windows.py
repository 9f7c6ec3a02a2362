"""Texts longer than the encoder's window: overlapping windows, every word labelled once.

The real bundled encoder (all-MiniLM-L6-v2) with its window cut to 16 tokens, so that a
sentence of a few dozen words spans several windows.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from multitune.embed.sentence_transformer import default_model_path
from multitune.embed.token_cache import TokenCache
from multitune.embed.token_pass import token_states, write_token_cache
from multitune.embed.windows import windows
from multitune.errors import DataError
from multitune.models.backbone import TextLayers
from multitune.tracking.pyfunc_output import word_labels
from multitune.training.tokens import PackedTokens

WINDOW, STRIDE = 16, 4
LONG = (
    "The senate votes on the budget today while the team scores a great goal and the lab "
    "reports awful physics results from Geneva, so reporters in Paris and Washington wait."
)
TEXTS = [LONG, "A short one.", "", "Unbelievably odd words."]


@pytest.fixture
def model(st_model: Any) -> Iterator[Any]:
    """The bundled encoder, its window cut to `WINDOW` tokens for the test."""
    before = st_model.max_seq_length
    st_model.max_seq_length = WINDOW
    yield st_model
    st_model.max_seq_length = before


def _word_count(text: str) -> int:
    return len(text.split())


def test_a_long_text_is_cut_into_overlapping_windows_and_each_word_is_labelled_once(
    model: Any,
) -> None:
    cut = windows(model, TEXTS, STRIDE)
    per_text = np.bincount(cut.text, minlength=len(TEXTS))
    assert per_text[0] >= 3 and list(per_text[1:]) == [1, 1, 1]
    assert cut.over == 1
    assert cut.lengths.max() <= WINDOW
    first = np.flatnonzero(cut.text == 0)
    for a, b in itertools.pairwise(first):  # neighbours share STRIDE tokens
        assert cut.input_ids[a][-1 - STRIDE : -1] == cut.input_ids[b][1 : 1 + STRIDE]
    offsets = cut.offsets(len(TEXTS))
    for i, text in enumerate(TEXTS):
        labelled = cut.words[offsets[i] : offsets[i + 1]]
        # Every word exactly once, in order, however many windows the text spans.
        np.testing.assert_array_equal(labelled[labelled >= 0], np.arange(_word_count(text)))
    # A text that fits is tokenized exactly as the encoder tokenizes it.
    fits = model.preprocess([TEXTS[1]])["input_ids"][0].tolist()
    assert cut.input_ids[int(np.flatnonzero(cut.text == 1)[0])] == fits


def test_a_word_in_two_windows_is_labelled_where_it_has_the_most_context(model: Any) -> None:
    cut = windows(model, [LONG], STRIDE)
    encoded = model.tokenizer(
        LONG,
        truncation=True,
        max_length=WINDOW,
        stride=STRIDE,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    starts = [m.start() for m in re.finditer(r"\S+", LONG)]
    best: dict[int, tuple[int, int]] = {}  # word -> (context, window), first window on ties
    for w, spans in enumerate(encoded["offset_mapping"]):
        seen = set()
        for p, (a, b) in enumerate(spans):
            if b <= a:
                continue
            word = max(i for i, s in enumerate(starts) if s <= a)
            if word in seen:
                continue
            seen.add(word)
            context = min(p - 1, len(spans) - 2 - p)
            if word not in best or context > best[word][0]:
                best[word] = (context, w)
    segments = cut.segments
    owner = {
        int(cut.words[t]): int(np.searchsorted(segments, t, side="right") - 1)
        for t in np.flatnonzero(cut.words >= 0)
    }
    assert owner == {word: w for word, (_, w) in best.items()}
    assert len(set(owner.values())) >= 3  # the words are spread over the windows


def test_a_stride_that_leaves_no_new_token_or_a_window_past_the_model_is_refused(
    model: Any,
) -> None:
    with pytest.raises(DataError, match=r"encoder\.stride is 14.*from 0 to 13"):
        windows(model, TEXTS, 14)
    model.max_seq_length = 600
    with pytest.raises(DataError, match=r"encoder\.window is 600, .* at most 512 tokens"):
        windows(model, TEXTS)


def test_texts_with_no_word_at_all_have_windows_and_no_label(model: Any) -> None:
    cut = windows(model, ["", "   "])
    assert list(cut.text) == [0, 1] and (cut.words == -1).all()
    assert list(cut.counts) == [0, 0]


def test_a_word_without_a_token_is_served_its_neighbours_label(model: Any) -> None:
    """A lone zero-width space is a word (`str.split`) but no token: the served labels still
    count one per word, each aligned to its word."""
    text = "\u200b Paris is \u200b big"
    cut = windows(model, [text])
    assert list(cut.counts) == [len(text.split())] == [5]
    np.testing.assert_array_equal(cut.words[cut.words >= 0], [1, 2, 4])
    scores = np.zeros((len(cut.words), 3))
    labelled = np.flatnonzero(cut.words >= 0)
    scores[labelled, [0, 1, 2]] = 1.0  # Paris -> 0, is -> 1, big -> 2
    np.testing.assert_array_equal(word_labels(scores, cut.words, 5), [0, 0, 1, 1, 2])


def test_rows_in_another_order_keep_their_windows(model: Any, tmp_path: Path) -> None:
    ids = np.array([f"r{i}" for i in range(len(TEXTS))])
    write_token_cache(model, TEXTS, ids, 1, tmp_path / "c", "unused")
    cache = TokenCache.read(tmp_path / "c")
    order = np.array([3, 0, 2])  # a subset, reordered: the long text in the middle
    _, offsets, words = cache.aligned(ids[order])
    fresh = token_states(model, [TEXTS[i] for i in order], 1, stride=cache.info["stride"])
    np.testing.assert_array_equal(cache.aligned_segments(ids[order]), fresh.segments)
    np.testing.assert_array_equal(offsets, fresh.offsets)
    np.testing.assert_array_equal(words, fresh.words)


def test_layers_read_a_long_text_window_by_window_as_the_encoder_did(
    model: Any, tmp_path: Path
) -> None:
    """The cached final states (a frozen step's path), the cached layer run again window by
    window (fine-tuning's path) and the served model's states from raw text agree, and the
    pooled vector is the encoder's own truncated vector (the first window)."""
    vectors = np.zeros((len(TEXTS), 384), np.float32)
    ids = np.array([f"r{i}" for i in range(len(TEXTS))])
    write_token_cache(model, TEXTS, ids, 1, tmp_path / "c", "unused", vectors=vectors)
    cache = TokenCache.read(tmp_path / "c")
    assert cache.info["texts_over_window"] == 1 and cache.info["window"] == WINDOW
    states, offsets, words = cache.aligned(ids)
    segments = cache.aligned_segments(ids)
    encoded = model.encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(vectors, encoded, atol=1e-5)

    layers = TextLayers(cache.info, 0)
    layers.load_pretrained(str(default_model_path()))
    final = cache.aligned_final(ids)
    read = PackedTokens.from_arrays(states, offsets, final=final, segments=segments)
    rerun = PackedTokens.from_arrays(states, offsets, segments=segments)
    served = token_states(model, TEXTS, 1, stride=cache.info["stride"])
    fresh = PackedTokens.from_arrays(served.states, served.offsets, segments=served.segments)
    np.testing.assert_array_equal(served.words, words)
    with torch.no_grad():
        outs = [layers.eval().run(t) for t in (read, rerun, fresh)]
    lengths = np.diff(offsets)
    real = np.arange(int(lengths.max()))[None, :] < lengths[:, None]
    token_values = [o[0].apply(lambda x: x).numpy()[real] for o in outs]
    for other in token_values[1:]:
        np.testing.assert_allclose(token_values[0], other, atol=2e-2)
    for _, pooled in outs:
        np.testing.assert_allclose(pooled.numpy(), encoded, atol=2e-3)
