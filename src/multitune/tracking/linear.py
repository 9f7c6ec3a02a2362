"""A linear model as plain arrays: fitted by scikit-learn, saved without pickle, served by numpy.

The final stage's linear reference (`multitune.final.reference`) keeps each task's fit as a
`LinearFit`; `LinearModel` adds the standardization and the modalities it reads, and is what
a grouped served model (`multitune.tracking.pyfunc`) carries for a task whose chosen side is
the linear reference. Serving imports numpy only: no scikit-learn, no pickle.

On disk (`save_linear` / `load_linear`), a directory holding

* `linear.npz` (`np.load(..., allow_pickle=False)` reads it): `mean`, `scale` (the
  standardization, one entry per concatenated input column), `weights` ``(k, d)``, `bias`
  ``(k,)``, `columns` ``(k,)`` and `fill` ``(width,)`` (see `LinearFit`);
* `linear.json`: ``{"format_version", "task", "modalities": [{"name", "width"}, ...],
  "link", "width", "vector", "chosen"}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from multitune.io import atomic_path

LINEAR_JSON, LINEAR_NPZ = "linear.json", "linear.npz"
FORMAT_VERSION = 1
Link = Literal["softmax", "sigmoid", "identity"]
_LINKS = ("softmax", "sigmoid", "identity")
_FLOATS = (np.float64, np.float32, np.float16)


@dataclass(frozen=True)
class LinearFit:
    """``link(x @ weights.T + bias)`` on standardized features, laid out in the networks'
    prediction format (`multitune.training.predict`).

    The `k` linked scores fill output columns `columns` of a ``(n, width)`` matrix whose other
    columns hold `fill`; `vector` outputs return its only column as ``(n,)``. So: binary
    ``(n,)`` P(class 1) (sigmoid, one score); classification and distribution ``(n, C)``
    (softmax over the classes seen in train, zero for the others; two seen classes are the
    softmax of ``(0, z)``, i.e. the logistic); multilabel ``(n, C)`` (one sigmoid per class,
    a class always or never on in train a constant column); regression ``(n,)`` (identity);
    a constant prediction has ``k = 0``.

    Attributes:
        weights: ``(k, d)``.
        bias: ``(k,)``.
        link: "softmax" (over the `k` scores), "sigmoid" (per score) or "identity".
        columns: ``(k,)`` output column of each score.
        fill: ``(width,)`` values of the columns no score fills.
        vector: Whether the output is ``(n,)`` (width 1) rather than ``(n, width)``.
    """

    weights: np.ndarray
    bias: np.ndarray
    link: Link
    columns: np.ndarray
    fill: np.ndarray
    vector: bool = False

    def __post_init__(self) -> None:
        k = len(self.bias)
        if self.weights.ndim != 2 or self.weights.shape[0] != k or self.columns.shape != (k,):
            raise ValueError(
                f"weights {self.weights.shape}, bias {self.bias.shape} and columns "
                f"{self.columns.shape} disagree on the number of scores"
            )
        if self.link not in _LINKS:
            raise ValueError(f"unknown link {self.link!r}; expected one of {_LINKS}")
        if self.vector and len(self.fill) != 1:
            raise ValueError(f"a vector output has width 1, not {len(self.fill)}")

    @property
    def width(self) -> int:
        """Output columns."""
        return len(self.fill)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Predictions for standardized features ``(n, d)``."""
        out = np.repeat(self.fill.astype(np.float64)[None], len(x), axis=0)
        if len(self.bias):
            scores = x @ self.weights.T + self.bias
            out[:, self.columns] = _LINK_FNS[self.link](scores)
        return out[:, 0] if self.vector else out

    @classmethod
    def constant(cls, fill: np.ndarray, d: int, *, vector: bool = False) -> LinearFit:
        """The same prediction for every row."""
        fill = np.atleast_1d(np.asarray(fill, dtype=np.float64))
        empty = np.zeros((0, d))
        return cls(empty, np.zeros(0), "identity", np.zeros(0, np.int64), fill, vector)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return cast(np.ndarray, e / e.sum(axis=1, keepdims=True))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))  # never overflows
    return cast(np.ndarray, np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)))


_LINK_FNS = {"softmax": _softmax, "sigmoid": _sigmoid, "identity": lambda z: z}


@dataclass(frozen=True)
class LinearModel:
    """One task's linear model on raw features: standardize, then `fit`.

    Attributes:
        task: The task it predicts.
        modalities: Modality name -> vector width, in concatenation order.
        mean: ``(d,)`` per input column, subtracted first (fitted on train rows).
        scale: ``(d,)`` per input column, divided by next.
        fit: The fit on the standardized features.
        chosen: How the fit was chosen (informational, e.g. ``{"model": "logistic",
            "c": 0.1}``).
    """

    task: str
    modalities: dict[str, int]
    mean: np.ndarray
    scale: np.ndarray
    fit: LinearFit
    chosen: dict[str, Any] = field(default_factory=dict)

    def standardize(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """The modalities' vectors concatenated and standardized.

        Computed as scikit-learn's `StandardScaler.transform` computes it (in the input's
        float precision, float32 for the embed stage's vectors), then widened to float64.
        """
        parts = []
        for name, width in self.modalities.items():
            part = np.asarray(features[name])
            if part.ndim != 2 or part.shape[1] != width:
                raise ValueError(
                    f"{self.task}: modality {name!r} has shape {part.shape}, expected (n, {width})"
                )
            parts.append(part)
        x = np.concatenate(parts, axis=1)
        dtype = x.dtype if x.dtype in _FLOATS else np.dtype(np.float64)
        x = x.astype(dtype, copy=True)
        x -= self.mean.astype(dtype)
        x /= self.scale.astype(dtype)
        return x.astype(np.float64)

    def predict(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Predictions for raw vectors per modality, in the networks' format (`LinearFit`)."""
        return self.fit(self.standardize(features))


def save_linear(model: LinearModel, directory: str | Path) -> Path:
    """Write `model` as `linear.npz` + `linear.json` (no pickle); see the module docstring."""
    fit = model.fit
    meta = {
        "format_version": FORMAT_VERSION,
        "task": model.task,
        "modalities": [{"name": m, "width": w} for m, w in model.modalities.items()],
        "link": fit.link,
        "width": fit.width,
        "vector": fit.vector,
        "chosen": model.chosen,
    }
    with atomic_path(directory) as tmp:
        tmp.mkdir(parents=True)
        np.savez(
            tmp / LINEAR_NPZ,
            mean=np.asarray(model.mean, np.float64),
            scale=np.asarray(model.scale, np.float64),
            weights=np.asarray(fit.weights, np.float64),
            bias=np.asarray(fit.bias, np.float64),
            columns=np.asarray(fit.columns, np.int64),
            fill=np.asarray(fit.fill, np.float64),
        )
        (tmp / LINEAR_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    return Path(directory)


def load_linear(directory: str | Path) -> LinearModel:
    """The model `save_linear` wrote to `directory`."""
    d = Path(directory)
    meta = json.loads((d / LINEAR_JSON).read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{d}: unsupported linear model format {meta.get('format_version')!r}")
    with np.load(d / LINEAR_NPZ, allow_pickle=False) as arrays:
        a = {k: arrays[k] for k in arrays.files}
    fit = LinearFit(a["weights"], a["bias"], meta["link"], a["columns"], a["fill"], meta["vector"])
    modalities = {m["name"]: int(m["width"]) for m in meta["modalities"]}
    if sum(modalities.values()) != fit.weights.shape[1] or a["mean"].shape != a["scale"].shape:
        raise ValueError(f"{d}: the modalities' widths do not match the weights")
    return LinearModel(meta["task"], modalities, a["mean"], a["scale"], fit, meta["chosen"])


def is_linear(directory: str | Path) -> bool:
    """Whether `directory` holds a saved linear model."""
    return (Path(directory) / LINEAR_JSON).is_file()
