"""A logistic-regression reference per task, on the same features and split.

Shows the tuned networks are not strawmen: scikit-learn's `LogisticRegression` (L2, lbfgs)
on the standardized concatenation of every modality's vectors, fitted on the task's labelled
train rows and scored on the test rows with the same metric functions as the networks.
Multilabel tasks get one logistic regression per class; regression tasks a ridge regression
(the linear counterpart), said so in the report.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from multitune.config.final import ReferenceConfig
from multitune.training import TrainingData
from multitune.training.metrics import task_metrics


def _proba(
    model: LogisticRegression, x: np.ndarray, n_classes: int, fitted: np.ndarray
) -> np.ndarray:
    out = np.zeros((len(x), n_classes))
    out[:, fitted] = model.predict_proba(x)
    return out


def _fit_predict(
    kind: str,
    x_tr: np.ndarray,
    y_tr: np.ndarray,
    x_te: np.ndarray,
    n_classes: int,
    cfg: ReferenceConfig,
) -> np.ndarray:
    if kind == "regression":
        return Ridge(alpha=1.0 / cfg.c).fit(x_tr, y_tr).predict(x_te)
    if kind == "multilabel":
        cols = []
        for c in range(n_classes):
            yc = y_tr[:, c] >= 0.5
            if yc.all() or not yc.any():
                cols.append(np.full(len(x_te), float(yc.mean())))
                continue
            lr = LogisticRegression(C=cfg.c, max_iter=cfg.max_iter).fit(x_tr, yc)
            cols.append(lr.predict_proba(x_te)[:, 1])
        return np.stack(cols, axis=1)
    y = y_tr.astype(np.int64)
    fitted = np.unique(y)
    if len(fitted) == 1:  # one class seen in train: a constant prediction
        n = 2 if kind == "binary" else n_classes
        const = np.zeros((len(x_te), n))
        const[:, fitted[0]] = 1.0
        return const[:, 1] if kind == "binary" else const
    lr = LogisticRegression(C=cfg.c, max_iter=cfg.max_iter).fit(x_tr, y)
    if kind == "binary":
        return _proba(lr, x_te, 2, fitted)[:, 1]
    return _proba(lr, x_te, n_classes, fitted)


def reference_scores(data: TrainingData, cfg: ReferenceConfig) -> dict[str, dict[str, float]]:
    """Test metrics of the linear reference, `{task: {metric: value}}`."""
    feats = np.concatenate([f.cpu().numpy() for f in data.features.values()], axis=1)
    tr, te = data.splits["train"].cpu().numpy(), data.splits["test"].cpu().numpy()
    scaler = StandardScaler().fit(feats[tr])
    x = scaler.transform(feats).astype(np.float64)
    out: dict[str, dict[str, float]] = {}
    for spec in data.tasks:
        if spec.type == "token_classification":
            continue  # a per-sentence linear model has no per-token reference to give
        y = data.targets[spec.name].cpu().numpy()
        mask = data.labelled[spec.name].cpu().numpy()
        train_rows = tr[mask[tr]]
        if len(train_rows) == 0:
            continue
        n_classes = len(spec.classes or [])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            pred = _fit_predict(spec.type, x[train_rows], y[train_rows], x[te], n_classes, cfg)
        out[spec.name] = task_metrics(spec, pred, y[te], mask[te])
    return out
