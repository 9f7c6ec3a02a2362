"""Token states as training data: packed on the device, padded per batch."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class PackedTokens:
    """A view of some rows of packed token states.

    Row `r` holds `states[offsets[r]:offsets[r + 1]]`; the view holds rows `rows`. Indexing a
    view (by a row-index tensor or a slice) gives another view without copying states;
    `padded` gathers a batch into the `(B, T, H)` layout the transformer layers read.

    Attributes:
        states: `(total_tokens, H)`, float16 (as cached) or float32.
        offsets: `(n + 1,)` long.
        rows: `(B,)` long, the rows of this view.
    """

    states: Tensor
    offsets: Tensor
    rows: Tensor

    @classmethod
    def from_arrays(
        cls, states: np.ndarray, offsets: np.ndarray, device: torch.device | str = "cpu"
    ) -> PackedTokens:
        """All rows of packed arrays (as `multitune.embed.token_cache` writes them)."""
        offsets_t = torch.as_tensor(np.asarray(offsets, dtype=np.int64))
        rows = torch.arange(len(offsets_t) - 1)
        with warnings.catch_warnings():  # a read-only memory map is shared, never written
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            states_t = torch.as_tensor(states)
        return cls(states_t, offsets_t, rows).to(device)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Tensor | slice) -> PackedTokens:
        return replace(self, rows=self.rows[index])

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
        """Bytes of the states and offsets."""
        return int(self.states.numel() * self.states.element_size() + self.offsets.numel() * 8)

    def to(self, device: torch.device | str) -> PackedTokens:
        """A copy on `device` (self if already there)."""
        device = torch.device(device)
        if self.device == device:
            return self
        return PackedTokens(self.states.to(device), self.offsets.to(device), self.rows.to(device))

    def padded(self) -> tuple[Tensor, Tensor]:
        """`(states (B, T, H) float32, mask (B, T) bool)`, T the longest row of the batch."""
        start = self.offsets[self.rows]
        lengths = self.offsets[self.rows + 1] - start
        width = max(int(lengths.max()), 1) if len(self.rows) else 1
        pos = torch.arange(width, device=self.device)
        mask = pos.unsqueeze(0) < lengths.unsqueeze(1)
        index = (start.unsqueeze(1) + pos.unsqueeze(0)).clamp(max=max(len(self.states) - 1, 0))
        states = self.states[index].float() * mask.unsqueeze(-1)
        return states, mask
