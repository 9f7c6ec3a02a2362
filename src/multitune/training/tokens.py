"""Token states as training data: packed on the device, padded per batch.

The states stay on the device; which rows a batch holds and how long each is stay on the host
(the offsets are host data before the states are ever copied), so a batch's shapes never
depend on reading a device tensor back: a step queues its kernels without waiting.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from multitune.embed.token_cache import runs


@dataclass(frozen=True)
class PackedTokens:
    """A view of some rows of packed token states.

    Row `r` holds `states[offsets[r]:offsets[r + 1]]`; the view holds rows `rows`. Indexing a
    view (by row indices or a slice) gives another view without copying states; `padded`
    gathers a batch into the `(B, T, H)` layout the transformer layers read.

    Attributes:
        states: `(total_tokens, H)`, float16 (as cached) or float32, on the device: the states
            entering the cached layers.
        offsets: `(n + 1,)` int64, on the host.
        rows: `(B,)` int64, on the host: the rows of this view.
        final: `(total_tokens, H)` packed like `states`, or None: the states leaving the top
            cached layer (the encoder's final token states), what a step reads when no layer
            of the backbone trains.
        segments: `(windows + 1,)` int64, on the host, or None (one window a row): the bounds
            of the encoder's windows in packed positions (`multitune.embed.token_cache`). A
            row longer than one window holds its windows one after another; the layers run
            each window apart, as the encoder did.
    """

    states: Tensor
    offsets: np.ndarray
    rows: np.ndarray
    final: Tensor | None = None
    segments: np.ndarray | None = None

    @classmethod
    def from_arrays(
        cls,
        states: np.ndarray,
        offsets: np.ndarray,
        device: torch.device | str = "cpu",
        final: np.ndarray | None = None,
        segments: np.ndarray | None = None,
    ) -> PackedTokens:
        """All rows of packed arrays (as `multitune.embed.token_cache` writes them)."""
        offsets = np.asarray(offsets, dtype=np.int64)
        rows = np.arange(len(offsets) - 1, dtype=np.int64)
        if segments is not None and len(segments) == len(offsets):
            segments = None  # one window a row
        tokens = cls(
            _tensor(states),
            offsets,
            rows,
            None if final is None else _tensor(final),
            None if segments is None else np.asarray(segments, dtype=np.int64),
        )
        return tokens.to(device)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: np.ndarray | Tensor | slice) -> PackedTokens:
        """The view of rows `rows[index]`. Index by host data (a slice, a NumPy array, a CPU
        tensor): a device tensor must be read back first, which waits for the device."""
        if isinstance(index, Tensor):
            index = index.numpy() if index.device.type == "cpu" else index.cpu().numpy()
        return replace(self, rows=self.rows[index])

    @property
    def lengths(self) -> np.ndarray:
        """`(B,)` int64 on the host: each row's token count."""
        return self.offsets[self.rows + 1] - self.offsets[self.rows]  # type: ignore[no-any-return]

    @property
    def has_final(self) -> bool:
        """Whether the final token states are held (what `packed(final=True)` reads)."""
        return self.final is not None

    @property
    def shape(self) -> tuple[int, int]:
        """`(rows, H)`: what the layers' pooled output will be."""
        return len(self.rows), int(self.states.shape[1])

    @property
    def device(self) -> torch.device:
        """Where the tensors live."""
        return self.states.device

    @property
    def nbytes(self) -> int:
        """Bytes of the states (entering and final) and offsets."""
        tensors = [t for t in (self.states, self.final) if t is not None]
        return int(sum(t.numel() * t.element_size() for t in tensors) + self.offsets.nbytes)

    def to(self, device: torch.device | str) -> PackedTokens:
        """A copy on `device` (self if already there)."""
        device = torch.device(device)
        if self.device == device:
            return self
        final = None if self.final is None else self.final.to(device)
        return replace(self, states=self.states.to(device), final=final)

    def packed(self, final: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """The batch's tokens without padding: `(states (N, H) float32, where (B, T) long,
        row (N,) long)`.

        `states` holds the rows' N tokens row after row (the final states if `final`, else
        those entering the layers); `where[b, t]` is the position of row b's token t among
        them, N past the row's end (T the longest row); `row` is the row each token is pooled
        into: its own within the row's first window, B (none) past it. Every index comes from
        the host's offsets, copied without waiting for the device.
        """
        source = self._source(final)
        lengths = self.lengths
        n, width = int(lengths.sum()), max(int(lengths.max(initial=0)), 1)
        ends = np.cumsum(lengths)
        row = np.repeat(np.arange(len(lengths)), lengths)
        position = runs(self.offsets[self.rows], lengths)
        pooled = row
        if self.segments is not None:  # only the first window's tokens are pooled
            window = np.searchsorted(self.segments, self.offsets[self.rows])
            first_end = self.segments[window + 1]
            pooled = np.where(position < first_end[row], row, len(lengths))
        index, row_t = to_device(np.stack([position, pooled]), self.device)
        first, length = to_device(np.stack([ends - lengths, lengths]), self.device)
        pos = torch.arange(width, device=self.device)
        where = (first.unsqueeze(1) + pos).masked_fill(pos >= length.unsqueeze(1), n)
        return source.index_select(0, index).float(), where, row_t

    def padded(self, final: bool = False) -> tuple[Tensor, Tensor]:
        """`(states (B, T, H) float32, mask (B, T) bool)`, T the longest row of the batch.

        Args:
            final: gather the final token states instead of those entering the layers.
        """
        return self._gather(self._source(final), self.offsets[self.rows], self.lengths)

    def _gather(
        self, source: Tensor, starts: np.ndarray, lengths: np.ndarray
    ) -> tuple[Tensor, Tensor]:
        """`(states (R, T, H) float32, mask (R, T) bool)`: the runs of `source` starting at
        `starts` (host) with `lengths` (host) tokens, padded to the longest, T."""
        width = max(int(lengths.max(initial=0)), 1)  # host data: no wait for the device
        start, length = to_device(np.stack([starts, lengths]), self.device)
        pos = torch.arange(width, device=self.device)
        mask = pos.unsqueeze(0) < length.unsqueeze(1)
        index = (start.unsqueeze(1) + pos.unsqueeze(0)).clamp(max=max(len(source) - 1, 0))
        return source[index].float() * mask.unsqueeze(-1), mask

    @property
    def windowed(self) -> bool:
        """Whether some row of this view is longer than one window."""
        return self.segments is not None and bool((self._window_counts() > 1).any())

    def _window_counts(self) -> np.ndarray:
        """`(B,)` how many windows each row of the view holds."""
        if self.segments is None:
            return np.ones(len(self.rows), dtype=np.int64)
        first = np.searchsorted(self.segments, self.offsets[self.rows])
        return np.searchsorted(self.segments, self.offsets[self.rows + 1]) - first  # type: ignore[no-any-return]

    def windows(self) -> tuple[np.ndarray, np.ndarray]:
        """`(tokens per window (W,), packed start of each window (W,))` of the view's rows'
        windows, row after row, on the host."""
        if self.segments is None:
            return self.lengths, self.offsets[self.rows]
        first = np.searchsorted(self.segments, self.offsets[self.rows])
        index = runs(first, self._window_counts())
        return self.segments[index + 1] - self.segments[index], self.segments[index]

    def padded_windows(
        self, final: bool = False
    ) -> tuple[Tensor, Tensor, np.ndarray, Tensor, Tensor]:
        """The batch's windows as the layers read them, and how to put the rows back.

        Returns:
            `(states (W, S, H) float32, mask (W, S) bool, lengths (W,) on the host, where
            (B, T) long, first (B,) long)`: every window of the rows, padded to the longest
            (S); `where[b, t]` is the position of row b's token t in the windows flattened to
            `(W * S,)`, `W * S` past the row's end; `first[b]` is row b's first window.
        """
        lengths, starts = self.windows()
        counts = self._window_counts()
        states, mask = self._gather(self._source(final), starts, lengths)
        width = states.shape[1]
        # Row b's tokens are its windows' tokens in order: token j of window w sits at w * S + j.
        flat = runs(np.arange(len(lengths)) * width, lengths)
        rows = self.lengths
        where = np.full((len(rows), max(int(rows.max(initial=0)), 1)), len(lengths) * width)
        row = np.repeat(np.arange(len(rows)), rows)
        where[row, runs(np.zeros(len(rows)), rows)] = flat
        where_t, first = (
            to_device(where, self.device),
            to_device(np.cumsum(counts) - counts, self.device),
        )
        return states, mask, lengths, where_t, first

    def _source(self, final: bool) -> Tensor:
        source = self.final if final else self.states
        if source is None:
            raise ValueError("these token states hold no final states (an older token cache)")
        return source


def to_device(array: np.ndarray, device: torch.device) -> Tensor:
    """A host array as a tensor on `device`, copied without waiting for the device (the copy
    is queued on the current stream; a CPU "copy" shares the array's memory)."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(device, non_blocking=True)


def _tensor(array: np.ndarray) -> Tensor:
    with warnings.catch_warnings():  # a read-only memory map is shared, never written
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(array)
