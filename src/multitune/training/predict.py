"""Inference and evaluation: user-facing predictions and per-split metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import Tensor

from multitune.models.multitask import MultiTaskModel
from multitune.training.data import TrainingData
from multitune.training.metrics import correct, joint_accuracy, task_metrics
from multitune.training.tokens import PackedTokens


@torch.no_grad()
def predict_tensors(
    model: MultiTaskModel, features: Mapping[str, Tensor | PackedTokens], batch_size: int = 4096
) -> dict[str, Tensor]:
    """Like `predict`, but tensors on the model's device (no copy to host)."""
    n = len(next(iter(features.values())))
    return _predict(
        model,
        n,
        lambda a, b: {m: features[m][a:b] for m in model.modality_dims},
        batch_size,
    )


@torch.no_grad()
def predict_rows(
    model: MultiTaskModel, data: TrainingData, idx: Tensor, batch_size: int = 4096
) -> dict[str, Tensor]:
    """`predict_tensors` of rows `idx` of `data`, gathered one batch at a time: never a copy
    of a whole split's features (a million-row train split's would be most of the matrix)."""
    tokens = model.token_modalities
    host = idx.cpu().numpy()  # read once here, not once per batch
    return _predict(
        model, len(idx), lambda a, b: data.inputs(idx[a:b], tokens, host[a:b]), batch_size
    )


def _predict(
    model: MultiTaskModel,
    n: int,
    batch: Callable[[int, int], Mapping[str, Tensor | PackedTokens]],
    batch_size: int,
) -> dict[str, Tensor]:
    """Each task's predictions of rows `0..n`, `batch(start, stop)` giving their inputs."""
    was_training = model.training
    model.eval()
    chunks: dict[str, list[Tensor]] = {t: [] for t in model.task_names}
    try:
        for start in range(0, max(n, 1), batch_size):  # an empty split still has shapes
            out = model(batch(start, start + batch_size))
            for t in model.task_names:
                chunks[t].append(model.head(t).predict(out[t]))
    finally:
        model.train(was_training)
    return {t: _cat(c) for t, c in chunks.items()}


def _cat(chunks: list[Tensor]) -> Tensor:
    """Concatenate along rows; per-token chunks `(B, T, C)` are zero-padded to the widest T."""
    if chunks[0].dim() == 3:
        width = max(c.shape[1] for c in chunks)
        chunks = [torch.nn.functional.pad(c, (0, 0, 0, width - c.shape[1])) for c in chunks]
    return torch.cat(chunks)


def predict(
    model: MultiTaskModel,
    features: Mapping[str, Tensor | np.ndarray | PackedTokens],
    batch_size: int = 4096,
) -> dict[str, np.ndarray]:
    """Predict every task for every row of `features`.

    Args:
        model: a trained model (``TrainResult.model`` or ``load_model(dir)``).
        features: modality -> ``(n, dim)`` vectors (as the embed stage writes them), or
            `PackedTokens` for the model's `token_modalities`.
        batch_size: rows per forward pass.

    Returns:
        task -> array: class probabilities ``(n, C)`` for classification, multilabel and
        distribution tasks (order = ``spec.classes``); P(second class) ``(n,)`` for binary
        tasks; values in original units ``(n,)`` for regression; per-token probabilities
        ``(n, T, C)`` for token tasks (zeros past a row's tokens).
    """
    device = next(model.parameters()).device
    tensors = {
        m: v.to(device)
        if isinstance(v, PackedTokens)
        else torch.as_tensor(np.asarray(v, dtype=np.float32) if not torch.is_tensor(v) else v)
        .to(device)
        .float()
        for m, v in features.items()
    }
    out = predict_tensors(model, tensors, batch_size)
    return {t: v.cpu().numpy() for t, v in out.items()}


def evaluate(
    model: MultiTaskModel,
    data: TrainingData,
    split: str,
    groups: Mapping[str, list[str]] | None = None,
    batch_size: int = 4096,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Metrics of `split`: ``({task: {metric: value}}, {group: {"joint_accuracy": v}})``."""
    idx = data.splits[split]
    preds = predict_rows(model, data, idx, batch_size)
    metrics, rights, masks = {}, {}, {}
    for spec in data.tasks:
        p = preds[spec.name].cpu().numpy()
        y = data.targets[spec.name][idx].cpu().numpy()
        mask = data.labelled[spec.name][idx].cpu().numpy()
        metrics[spec.name] = task_metrics(spec, p, y, mask)
        if spec.type != "regression":
            rights[spec.name], masks[spec.name] = correct(spec, p, y), mask
    joint: dict[str, dict[str, float]] = {}
    for group, members in (groups or {}).items():
        if all(m in rights for m in members):
            value = joint_accuracy([rights[m] for m in members], [masks[m] for m in members])
            if value is not None:
                joint[group] = {"joint_accuracy": value}
    return metrics, joint
