"""The linear floor: a validation-tuned scikit-learn model per task, on the same features.

"A tuned linear model on the same features; a network below it is a broken baseline." Each
task gets scikit-learn's `LogisticRegression` (L2, lbfgs) on the standardized concatenation of
every modality's vectors (the scaler fitted on train rows only), fitted on the task's labelled
train rows. Multilabel tasks get one logistic regression per class; regression tasks a
`Ridge` with ``alpha = 1 / C`` (the linear counterpart); token-classification tasks none (a
per-row linear model has no per-token prediction).

The grid is ``ReferenceConfig.c x ReferenceConfig.class_weight`` (C only for ridge). Every
setting is fitted on train; the one with the best validation primary metric
(`multitune.training.metrics.primary_metric`) is kept, ties going to the simpler setting (the
smaller C, then no class weighting). The test split is read only to predict with, and score,
the kept setting. Without labelled validation rows (or with the primary metric undefined on
them) the grid's middle C (unweighted if the grid has it) is used, and `chosen` says so.

Each kept fit is held as plain arrays (`multitune.tracking.linear.LinearFit`; its predictions
equal scikit-learn's `predict_proba` / `predict`), so a task whose chosen side is the
reference can be served without scikit-learn or pickle (`ReferenceResult.save`).

Fits over increasing C warm-start from the previous solution and run on one BLAS thread: the
default grid (5 C x 2 weightings) over 2 binary tasks of 12k train rows and 3 classification
tasks of ~900, on 512 dims, takes 5-10 s on 2 cores shared with other work.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from multitune.config.final import ReferenceConfig
from multitune.models.heads import TaskSpec
from multitune.tracking.linear import LinearFit, LinearModel, save_linear
from multitune.training import TrainingData
from multitune.training.metrics import higher_is_better, primary_metric, task_metrics

__all__ = [
    "LinearFit",
    "ReferenceResult",
    "fit_reference",
    "logistic_fit",
    "reference_scores",
    "ridge_fit",
]

_Setting = tuple[float, str]  # (C, class weighting)


@dataclass(frozen=True)
class ReferenceResult:
    """The reference's outcome per task (token-classification tasks and tasks without
    labelled train rows are absent).

    Attributes:
        test_pred: task -> predictions for every row of ``data.splits["test"]``, in that order
            and in the networks' format (`multitune.training.predict`): P(class 1) ``(n,)``
            for binary, class probabilities ``(n, C)`` for classification, multilabel and
            distribution, values ``(n,)`` for regression.
        test: task -> test metrics of the kept setting (labelled test rows, `task_metrics`).
        val: task -> validation metrics of the kept setting (empty without labelled val rows).
        chosen: task -> the kept setting and how it was chosen, e.g. ``{"model": "logistic",
            "c": 0.1, "class_weight": "balanced", "selected_on": "val auroc"}``.
        val_pred: task -> predictions for every row of ``data.splits["val"]``, as `test_pred`.
        fits: task -> the kept fit, plain arrays on standardized features (see `predict`,
            `save`).
        scaler: The standardization fitted on train rows.
        modalities: The modalities concatenated, in order, and each one's width.
    """

    test_pred: dict[str, np.ndarray]
    test: dict[str, dict[str, float]]
    val: dict[str, dict[str, float]]
    chosen: dict[str, dict[str, Any]]
    val_pred: dict[str, np.ndarray] = field(default_factory=dict)
    fits: dict[str, LinearFit] = field(default_factory=dict)
    scaler: StandardScaler | None = None
    modalities: dict[str, int] = field(default_factory=dict)

    def predict(self, task: str, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """The kept setting's predictions for new rows (raw features per modality, as
        `TrainingData.features`), in the networks' format: the same scaler and fit that
        predicted the test split."""
        if self.scaler is None or task not in self.fits:
            raise KeyError(f"no linear reference was fitted for task {task!r}")
        x = np.concatenate([np.asarray(features[m]) for m in self.modalities], axis=1)
        return self.fits[task](self.scaler.transform(x).astype(np.float64))

    def model(self, task: str) -> LinearModel:
        """`task`'s kept fit with its standardization: what `save` writes, numpy only."""
        if self.scaler is None or task not in self.fits:
            raise KeyError(f"no linear reference was fitted for task {task!r}")
        return LinearModel(
            task=task,
            modalities=dict(self.modalities),
            mean=np.asarray(self.scaler.mean_, np.float64),
            scale=np.asarray(self.scaler.scale_, np.float64),
            fit=self.fits[task],
            chosen=dict(self.chosen[task]),
        )

    def save(self, task: str, directory: str | Path) -> Path:
        """Write `task`'s linear model to `directory` without pickle (`linear.npz` +
        `linear.json`; `multitune.tracking.linear.load_linear` reads it back)."""
        return save_linear(self.model(task), directory)


def logistic_fit(model: LogisticRegression, width: int, *, binary: bool = False) -> LinearFit:
    """A fitted `LogisticRegression` (its classes are class indices) as a `LinearFit`: its
    ``predict_proba`` over `width` classes, zero for classes it did not see; or, `binary`
    (classes 0 and 1), P(class 1) ``(n,)``."""
    coef, intercept = model.coef_.astype(np.float64), model.intercept_.astype(np.float64)
    seen = np.asarray(model.classes_, dtype=np.int64)
    if binary:
        if seen.tolist() != [0, 1]:
            raise ValueError(f"a binary fit needs classes [0, 1], not {seen.tolist()}")
        return LinearFit(coef, intercept, "sigmoid", np.zeros(1, np.int64), np.zeros(1), True)
    if len(seen) == 2:  # one score z for the second class: the logistic is softmax of (0, z)
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    return LinearFit(coef, intercept, "softmax", seen, np.zeros(width))


def ridge_fit(model: Ridge) -> LinearFit:
    """A fitted single-target `Ridge` as a `LinearFit`: its ``predict``, values ``(n,)``."""
    weights = np.asarray(model.coef_, np.float64).reshape(1, -1)
    bias = np.atleast_1d(np.asarray(model.intercept_, np.float64))
    return LinearFit(weights, bias, "identity", np.zeros(1, np.int64), np.zeros(1), True)


def _logistic_path(
    x: np.ndarray,
    y: np.ndarray,
    cs: list[float],
    class_weight: str,
    max_iter: int,
    keep: Callable[[LogisticRegression], LinearFit],
) -> list[LinearFit]:
    """One fit per C (ascending), each warm-started from the previous one, kept by `keep`."""
    model = LogisticRegression(
        C=cs[0],
        class_weight=None if class_weight == "none" else "balanced",
        max_iter=max_iter,
        warm_start=True,
    )
    return [keep(model.set_params(C=c).fit(x, y)) for c in cs]


def _single_label(
    kind: str, x: np.ndarray, y: np.ndarray, n_classes: int, cs: list[float], cw: str, iters: int
) -> list[LinearFit]:
    """Binary/classification/distribution fits per C (train has two classes or more)."""
    binary = kind == "binary"
    width = 2 if binary else n_classes
    return _logistic_path(
        x, y.astype(np.int64), cs, cw, iters, lambda m: logistic_fit(m, width, binary=binary)
    )


def _multilabel(
    x: np.ndarray, y: np.ndarray, n_classes: int, cs: list[float], cw: str, iters: int
) -> list[LinearFit]:
    """Per C, one logistic regression per class; a class always (or never) on is a constant."""
    fill = np.zeros(n_classes)
    paths: dict[int, list[LinearFit]] = {}
    for k in range(n_classes):
        yk = (y[:, k] >= 0.5).astype(np.int64)
        if yk.all() or not yk.any():
            fill[k] = float(yk.mean())
        else:
            paths[k] = _logistic_path(
                x, yk, cs, cw, iters, lambda m: logistic_fit(m, 2, binary=True)
            )
    columns = np.array(sorted(paths), dtype=np.int64)
    fits = []
    for i in range(len(cs)):
        weights, bias = np.zeros((0, x.shape[1])), np.zeros(0)
        if paths:
            weights = np.vstack([paths[k][i].weights for k in columns])
            bias = np.concatenate([paths[k][i].bias for k in columns])
        fits.append(LinearFit(weights, bias, "sigmoid", columns, fill.copy()))
    return fits


def _fit_grid(
    spec: TaskSpec, x: np.ndarray, y: np.ndarray, cfg: ReferenceConfig
) -> tuple[dict[_Setting, LinearFit], str]:
    """Every grid setting fitted on (`x`, `y`): ``({(C, weighting): fit}, model)``."""
    cs = sorted(set(cfg.c))
    if spec.type == "regression":
        return {(c, "n/a"): ridge_fit(Ridge(alpha=1.0 / c).fit(x, y)) for c in cs}, "ridge"
    n_classes = len(spec.classes or [])
    if spec.type != "multilabel" and len(np.unique(y)) == 1:
        # One class seen in train: predict it for every row; there is nothing to tune.
        row = np.zeros(2 if spec.type == "binary" else n_classes)
        row[int(y[0])] = 1.0
        binary = spec.type == "binary"
        constant = LinearFit.constant(row[1:] if binary else row, x.shape[1], vector=binary)
        return {(cs[0], "n/a"): constant}, "constant"
    grid: dict[_Setting, LinearFit] = {}
    for cw in sorted(set(cfg.class_weight), key=lambda w: w != "none"):
        if spec.type == "multilabel":
            preds = _multilabel(x, y, n_classes, cs, cw, cfg.max_iter)
        else:
            preds = _single_label(spec.type, x, y, n_classes, cs, cw, cfg.max_iter)
        grid.update(zip([(c, cw) for c in cs], preds, strict=True))
    return grid, "logistic_per_class" if spec.type == "multilabel" else "logistic"


def _default(grid: dict[_Setting, LinearFit]) -> _Setting:
    """The setting used when validation cannot choose: the middle C, unweighted if in the grid."""
    cs = sorted({c for c, _ in grid})
    return cs[len(cs) // 2], min((w for _, w in grid), key=lambda w: w != "none")


def _select(
    spec: TaskSpec,
    grid: dict[_Setting, LinearFit],
    x_val: np.ndarray,
    y_val: np.ndarray,
    m_val: np.ndarray,
) -> tuple[_Setting, dict[str, float], str]:
    """The setting with the best validation primary metric, its val metrics, and how."""
    metric = primary_metric(spec.type)
    if len(grid) == 1:
        (only,) = grid
        return only, task_metrics(spec, grid[only](x_val), y_val, m_val), "none (one setting)"
    if not m_val.any():
        return _default(grid), {}, "none (no labelled val rows)"
    sign = 1.0 if higher_is_better(metric) else -1.0
    best: tuple[_Setting, dict[str, float]] | None = None
    # Simplest first (smaller C, then no weighting), so a tie keeps the simpler setting.
    for setting in sorted(grid, key=lambda s: (s[0], s[1] != "none")):
        scores = task_metrics(spec, grid[setting](x_val), y_val, m_val)
        value = scores.get(metric, math.nan)
        if math.isnan(value):
            continue
        if best is None or sign * value > sign * best[1][metric]:
            best = setting, scores
    if best is None:
        setting = _default(grid)
        scores = task_metrics(spec, grid[setting](x_val), y_val, m_val)
        return setting, scores, f"none (val {metric} undefined)"
    return best[0], best[1], f"val {metric}"


def fit_reference(data: TrainingData, cfg: ReferenceConfig) -> ReferenceResult:
    """Fit the grid per task on train, keep the best setting on val, predict test.

    Args:
        data: The training data (any device); its train, val and test splits are used.
        cfg: The grid and solver settings.

    Returns:
        Per task: test predictions and metrics of the kept setting, its validation metrics,
        and the setting itself.
    """
    # One BLAS/OpenMP thread: the matrices are small, and on a busy machine threads
    # oversubscribe (measured: fits 10-30x slower with 2 threads on 2 loaded cores).
    with threadpool_limits(limits=1):
        feats = np.concatenate([f.cpu().numpy() for f in data.features.values()], axis=1)
        split = {s: data.splits[s].cpu().numpy() for s in ("train", "val", "test")}
        scaler = StandardScaler().fit(feats[split["train"]])
        x = {s: scaler.transform(feats[i]).astype(np.float64) for s, i in split.items()}
        widths = {m: int(f.shape[1]) for m, f in data.features.items()}
        out = ReferenceResult({}, {}, {}, {}, scaler=scaler, modalities=widths)
        for spec in data.tasks:
            if spec.type == "token_classification":
                continue  # a per-sentence linear model has no per-token reference to give
            y = data.targets[spec.name].cpu().numpy()
            mask = data.labelled[spec.name].cpu().numpy()
            ys = {s: y[i] for s, i in split.items()}
            masks = {s: mask[i] for s, i in split.items()}
            if not masks["train"].any():
                continue
            _fit_task(spec, x, ys, masks, cfg, out)
    return out


def _fit_task(
    spec: TaskSpec,
    x: dict[str, np.ndarray],
    y: dict[str, np.ndarray],
    labelled: dict[str, np.ndarray],
    cfg: ReferenceConfig,
    out: ReferenceResult,
) -> None:
    """Fit, select and score one task (arrays per split), writing into `out`."""
    on = labelled["train"]
    with warnings.catch_warnings():
        # A fit stopped at max_iter is still a valid setting, judged on val like the rest.
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid, model = _fit_grid(spec, x["train"][on], y["train"][on], cfg)
    setting, val_metrics, how = _select(spec, grid, x["val"], y["val"], labelled["val"])
    c, weighting = setting
    chosen: dict[str, Any] = {"model": model, "selected_on": how}
    if model == "constant":
        chosen["selected_on"] = "none (one class in train)"
    elif model == "ridge":
        chosen |= {"c": c, "alpha": 1.0 / c}
    else:
        chosen |= {"c": c, "class_weight": weighting}
    pred = grid[setting](x["test"])
    out.fits[spec.name] = grid[setting]
    out.test_pred[spec.name] = pred
    out.val_pred[spec.name] = grid[setting](x["val"])
    out.test[spec.name] = task_metrics(spec, pred, y["test"], labelled["test"])
    out.val[spec.name] = val_metrics
    out.chosen[spec.name] = chosen


def reference_scores(data: TrainingData, cfg: ReferenceConfig) -> dict[str, dict[str, float]]:
    """Test metrics of the reference, `{task: {metric: value}}` (see `fit_reference`)."""
    return fit_reference(data, cfg).test
