"""`TrainingData` pickled with its tensors as NumPy arrays, rebuilt as tensors sharing their
memory (`TrainingData.__reduce__`): Ray's object store then hands every trial the arrays as
views of one shared copy."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from multitune.training.tokens import PackedTokens


@dataclass(frozen=True)
class _Array:
    """A tensor's data while pickled (see `TrainingData.__reduce__`)."""

    array: np.ndarray


def as_arrays(value: Any) -> Any:
    """`value` with every tensor (in dicts and `PackedTokens`) as an `_Array` on the CPU."""
    if isinstance(value, Tensor):
        return _Array(value.detach().cpu().contiguous().numpy())
    if isinstance(value, dict):
        return {k: as_arrays(v) for k, v in value.items()}
    if isinstance(value, PackedTokens):
        return replace(value, **{f.name: as_arrays(getattr(value, f.name)) for f in fields(value)})
    return value


def as_tensors(value: Any) -> Any:
    """The inverse of `as_arrays`: tensors sharing the arrays' memory (read-only when the arrays
    are views of Ray's object store; training never writes its data)."""
    if isinstance(value, _Array):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(value.array)
    if isinstance(value, dict):
        return {k: as_tensors(v) for k, v in value.items()}
    if isinstance(value, PackedTokens):
        return replace(
            value, **{f.name: as_tensors(getattr(value, f.name)) for f in fields(value)}
        )
    return value
