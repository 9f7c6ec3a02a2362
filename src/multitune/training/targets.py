"""Raw labels -> the trainer's targets: encoded per task type, with the labelled-row mask.

What `TrainingData.targets` and `TrainingData.labelled` hold (see `multitune.training.data`);
the labels arrive as ingest left them (`multitune.data.targets`). A task without classes gets
them from its labels (`resolve_classes`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from multitune.errors import DataError
from multitune.models.heads import TaskSpec


def token_targets(
    spec: TaskSpec, values: pd.Series, words: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-token class indices `(n, longest row)` (-1: no label) and the labelled-row mask.

    A row's label list is aligned to its words; the first sub-word token of word `w`
    (`words == w`) gets the label of word `w`, every other token -1.

    Raises:
        DataError: a label outside the task's classes.
    """
    n = len(values)
    lengths = np.diff(offsets)
    lists = values.map(lambda v: None if v is None else list(v))
    mask = lists.notna().to_numpy()
    counts = lists.map(lambda v: 0 if v is None else len(v)).to_numpy(dtype=np.int64)
    flat = lists.explode().dropna().astype(str)
    codes = pd.Categorical(flat, categories=list(spec.classes or [])).codes.astype(np.int64)
    _check_known(spec, flat[codes < 0])
    start = np.zeros(n, dtype=np.int64)
    np.cumsum(counts[:-1], out=start[1:])
    row = np.repeat(np.arange(n), lengths)
    pos = np.arange(int(offsets[-1])) - np.repeat(offsets[:-1], lengths)
    keep = (words >= 0) & mask[row] & (words < counts[row])
    y = np.full((n, max(int(lengths.max(initial=1)), 1)), -1, dtype=np.int64)
    y[row[keep], pos[keep]] = codes[start[row[keep]] + words[keep]]
    return y, mask


def resolve_classes(spec: TaskSpec, values: pd.Series) -> TaskSpec:
    """`spec` with its classes found in `values` (sorted) when it has none."""
    if spec.type == "regression" or spec.classes:
        return spec
    if spec.type == "token_classification":
        found = values.dropna().explode().dropna()
    elif spec.type == "multilabel":
        found = _multilabel_lists(values, spec.config.separator).explode().dropna()
    else:
        found = values.dropna()
    return replace(spec, classes=sorted(found.astype(str).unique().tolist()))


def _multilabel_lists(values: pd.Series, separator: str) -> pd.Series:
    return values.map(
        lambda v: v.split(separator) if isinstance(v, str) else (None if v is None else list(v))
    )


def encode_targets(spec: TaskSpec, values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Encode raw labels for `spec`: ``(target, labelled mask)``; see `TrainingData.targets`.

    Raises:
        DataError: a label outside the task's classes.
    """
    if spec.type == "regression":
        y = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        mask = np.isfinite(y)
        return np.where(mask, y, 0.0).astype(np.float32), mask
    classes = list(spec.classes or [])
    if spec.type == "multilabel":
        lists = _multilabel_lists(values.where(values.notna(), None), spec.config.separator)
        mask = lists.notna().to_numpy()
        exploded = lists.explode().dropna().astype(str)
        codes = pd.Categorical(exploded, categories=classes).codes
        _check_known(spec, exploded[codes < 0])
        y = np.zeros((len(values), len(classes)), dtype=np.float32)
        y[exploded.index.to_numpy()[codes >= 0], codes[codes >= 0]] = 1.0
        return y, mask
    present = values.notna().to_numpy()
    text = values.where(values.notna(), None).map(lambda v: None if v is None else str(v))
    codes = pd.Categorical(text, categories=classes).codes.astype(np.int64)
    _check_known(spec, text[present & (codes < 0)])
    mask = codes >= 0
    codes = np.where(mask, codes, 0)
    if spec.type == "binary":
        return codes.astype(np.float32), mask
    return codes, mask


def _check_known(spec: TaskSpec, unknown: pd.Series) -> None:
    if len(unknown):
        bad = ", ".join(sorted(map(repr, unknown.unique()))[:5])
        raise DataError(
            f"task {spec.name!r}: label(s) {bad} not among its classes "
            f"{', '.join(spec.classes or [])}"
        )
