"""Metrics per task type, joint metrics over task groups, the validation objective and Δm.

Per task type (computed on the rows labelled for the task):

=============== ======================================== =================
type            metrics                                  primary
=============== ======================================== =================
classification  accuracy, macro_f1                       macro_f1
binary          accuracy, f1 (positive class), auroc     auroc
multilabel      micro_f1, macro_f1 (threshold 0.5)       micro_f1
regression      mae, rmse, r2 (original units)           r2
distribution    mode_accuracy, kl (to the soft target)   mode_accuracy
token_class.    token_accuracy, entity_f1                entity_f1
=============== ======================================== =================

Token metrics count each word once (its first sub-word token). `entity_f1` is the micro F1 of
exact entity spans read from BIO tags (CoNLL's measure; an I- tag without a matching B- opens
an entity, as in conlleval); a tag without a B-/I- prefix other than O is an entity of one
word.

A metric that is undefined on the rows given (AUROC with one class, R² of a constant) is left
out rather than reported as NaN; a task with no labelled rows gets an empty dict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from multitune.models.heads import TaskSpec

_PRIMARY = {
    "classification": "macro_f1",
    "binary": "auroc",
    "multilabel": "micro_f1",
    "regression": "r2",
    "distribution": "mode_accuracy",
    "token_classification": "entity_f1",
}
_LOWER_IS_BETTER = {"mae", "rmse", "kl", "loss"}


def primary_metric(task_type: str) -> str:
    """The metric the validation objective and model selection use for `task_type`."""
    return _PRIMARY[task_type]


def higher_is_better(metric: str) -> bool:
    """False for errors and divergences (mae, rmse, kl, loss), True otherwise."""
    return metric not in _LOWER_IS_BETTER


def _f1(tp: Any, fp: Any, fn: Any) -> Any:
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Mean F1 over the classes present in `y_true` or `y_pred` (as scikit-learn)."""
    cm = np.bincount(y_true * n_classes + y_pred, minlength=n_classes**2).reshape(n_classes, -1)
    tp = np.diag(cm).astype(np.float64)
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    present = (tp + fp + fn) > 0
    return float(_f1(tp, fp, fn)[present].mean())


def auroc(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with tied ranks); None with one class."""
    pos = y_true.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = average_ranks(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of the flattened `values`, ties given their average rank; all NaN when
    any value is NaN. The same float64 ranks as `scipy.stats.rankdata(values)` (its defaults:
    method "average", NaNs propagate), without importing SciPy: a trial pays 0.6 s for it."""
    a = np.asarray(values).ravel()
    if a.dtype.kind in "fc" and np.isnan(a).any():
        return np.full(a.size, np.nan)
    order = np.argsort(a, kind="stable")
    sorted_a = a[order]
    first = np.r_[True, sorted_a[1:] != sorted_a[:-1]]
    group = np.cumsum(first) - 1  # each sorted value's tie group
    bounds = np.r_[np.flatnonzero(first), a.size]  # where each group starts, then the end
    # A group spanning sorted positions [lo, hi) holds ranks lo+1 .. hi: average (lo+hi+1)/2.
    mean_rank = 0.5 * (bounds[:-1] + bounds[1:] + 1)
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = mean_rank[group]
    return ranks


def kl_to_soft_target(probs: np.ndarray, y: np.ndarray, smoothing: float) -> float:
    """Mean KL(soft target || probs), the soft target built as the distribution head does."""
    n_classes = probs.shape[1]
    s = smoothing if n_classes > 1 else 0.0
    soft = np.full(probs.shape, s / max(n_classes - 1, 1))
    soft[np.arange(len(y)), y] = 1.0 - s
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(soft > 0, soft * (np.log(soft) - np.log(np.clip(probs, 1e-12, 1))), 0)
    return float(terms.sum(1).mean())


def entity_spans(tags: Sequence[str]) -> set[tuple[int, int, str]]:
    """`(start, end, type)` of the entities in a BIO tag sequence (end exclusive)."""
    spans, start, kind = set(), -1, ""
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, name = tag.partition("-") if tag[:2] in ("B-", "I-") else ("", "", tag)
        continues = prefix == "I" and start >= 0 and name == kind
        if start >= 0 and not continues:
            spans.add((start, i, kind))
            start = -1
        if tag != "O" and not continues:
            start, kind = i, name
    return spans


def token_counts(spec: TaskSpec, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per row `(n, 5)`: entity true positives, false positives, false negatives, words
    right, words labelled; from `(n, T, C)` probabilities and `(n, L)` targets (-1: none).

    Token metrics over any set of rows are sums of these (`token_metrics_from_counts`), so a
    bootstrap draws rows without re-reading spans.
    """
    width = min(pred.shape[1], target.shape[1])
    hard, y = pred[:, :width].argmax(-1), target[:, :width]
    valid = y >= 0
    classes = list(spec.classes or [])
    counts = np.zeros((len(y), 5), dtype=np.int64)
    for i, (row_pred, row_y, row_valid) in enumerate(zip(hard, y, valid, strict=True)):
        gold = entity_spans([classes[c] for c in row_y[row_valid]])
        guess = entity_spans([classes[c] for c in row_pred[row_valid]])
        counts[i, :3] = len(gold & guess), len(guess - gold), len(gold - guess)
    counts[:, 3] = ((hard == y) & valid).sum(1)
    counts[:, 4] = valid.sum(1)
    return counts


def token_metrics_from_counts(counts: np.ndarray) -> dict[str, float]:
    """Token accuracy and entity F1 of the rows whose `token_counts` are given."""
    tp, fp, fn, right, words = counts.sum(0)
    if words == 0:
        return {}
    return {"token_accuracy": float(right / words), "entity_f1": float(_f1(tp, fp, fn))}


def task_metrics(
    spec: TaskSpec, pred: np.ndarray, target: np.ndarray, labelled: np.ndarray
) -> dict[str, float]:
    """Metrics of one task; `pred` as `multitune.training.predict` returns it."""
    if not labelled.any():
        return {}
    p, y = pred[labelled], target[labelled]
    out: dict[str, float] = {}
    if spec.type == "token_classification":
        out = token_metrics_from_counts(token_counts(spec, p, y))
    elif spec.type in ("classification", "distribution"):
        y = y.astype(np.int64)
        hard = p.argmax(1)
        acc = float((hard == y).mean())
        if spec.type == "classification":
            out = {"accuracy": acc, "macro_f1": macro_f1(y, hard, p.shape[1])}
        else:
            out = {"mode_accuracy": acc, "kl": kl_to_soft_target(p, y, spec.config.smoothing)}
    elif spec.type == "binary":
        y = y.astype(np.int64)
        hard = (p >= 0.5).astype(np.int64)
        tp = float(((hard == 1) & (y == 1)).sum())
        fp, fn = float(((hard == 1) & (y == 0)).sum()), float(((hard == 0) & (y == 1)).sum())
        out = {"accuracy": float((hard == y).mean()), "f1": float(_f1(tp, fp, fn))}
        auc = auroc(y, p)
        if auc is not None:
            out["auroc"] = auc
    elif spec.type == "multilabel":
        hard, yb = p >= 0.5, y >= 0.5
        tp = (hard & yb).sum(0).astype(np.float64)
        fp, fn = (hard & ~yb).sum(0), (~hard & yb).sum(0)
        present = (tp + fp + fn) > 0
        out = {
            "micro_f1": float(_f1(tp.sum(), fp.sum(), fn.sum())),
            "macro_f1": float(_f1(tp, fp, fn)[present].mean()) if present.any() else 0.0,
        }
    else:
        err = p - y
        out = {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean()))}
        ss_tot = float(((y - y.mean()) ** 2).sum())
        if ss_tot > 0:
            out["r2"] = 1.0 - float((err**2).sum()) / ss_tot
    return out


def correct(spec: TaskSpec, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per row, whether the prediction is right (a multilabel row: every label right; a
    token row: every labelled word right)."""
    if spec.type == "token_classification":
        width = min(pred.shape[1], target.shape[1])
        y = target[:, :width]
        return np.asarray(((pred[:, :width].argmax(-1) == y) | (y < 0)).all(1))
    if spec.type in ("classification", "distribution"):
        return np.asarray(pred.argmax(1) == target.astype(np.int64))
    if spec.type == "binary":
        return np.asarray((pred >= 0.5) == (target >= 0.5))
    if spec.type == "multilabel":
        return np.asarray(((pred >= 0.5) == (target >= 0.5)).all(1))
    raise ValueError(f"task {spec.name!r} is a regression: no joint accuracy")


def joint_accuracy(rights: Sequence[np.ndarray], labelled: Sequence[np.ndarray]) -> float | None:
    """Share of rows, labelled for every task of a group, where every task is right at once.

    Returns None when no row is labelled for all of them.
    """
    covered = np.logical_and.reduce([np.asarray(m, bool) for m in labelled])
    if not covered.any():
        return None
    ok = np.logical_and.reduce([np.asarray(r, bool) for r in rights])
    return float(ok[covered].mean())


def normalized_score(metric: str, value: float) -> float:
    """A higher-is-better score: the metric itself, or ``exp(-value)`` for losses/errors."""
    return value if higher_is_better(metric) else math.exp(-value)


def objective(
    metrics: Mapping[str, Mapping[str, float]],
    task_types: Mapping[str, str],
    baseline: Mapping[str, Mapping[str, float]] | None = None,
) -> float:
    """The validation objective (higher is better) of a run of the tasks in `task_types`.

    One objective for each side, used everywhere that side is chosen: early stopping
    (`multitune.training.train`), a search trial's score and the final stage's pick.

    - With `baseline` (single-task validation metrics ``{task: {metric: value}}``: a
      multi-task run): Δm over every metric, as `delta_m` and the report compute it (each
      metric both sides report, sign-corrected relative change; a metric whose single-task
      value is not finite or below `MIN_BASELINE` in magnitude is left out; each task weighs
      the same), over the tasks with such a metric. A task with none (no labelled validation
      rows, or no usable single-task value) is left out. A fraction, like `delta_m`.
    - Without: the mean over tasks of the normalized primary metric (`normalized_score`); for
      a single-task run, its task's primary metric (`primary_metric`).

    NaN when no task is left, or when a value entering it is NaN (a diverged model never
    scores better by losing a metric).
    """
    if baseline is not None:
        mt: dict[str, dict[str, float]] = {}
        st: dict[str, dict[str, float]] = {}
        for task in task_types:
            values, base = metrics.get(task) or {}, baseline.get(task) or {}
            usable = [m for m in values if m in base and _usable_baseline(base[m])]
            if usable:
                mt[task] = {m: values[m] for m in usable}
                st[task] = {m: base[m] for m in usable}
        return delta_m(mt, st) if mt else float("nan")
    scores = []
    for task, kind in task_types.items():
        metric = primary_metric(kind)
        value = metrics.get(task, {}).get(metric)
        if value is not None:
            scores.append(normalized_score(metric, value))
    return float(np.mean(scores)) if scores else float("nan")


def _usable_baseline(value: float) -> bool:
    """Whether a single-task value can be divided by (finite, at least `MIN_BASELINE`)."""
    return math.isfinite(value) and abs(value) >= MIN_BASELINE


MIN_BASELINE = 1e-3
"""Smallest |single-task value| a metric may have to enter Δm.

Δm divides by the single-task value, so against a value near zero (an R² of ~0, an F1 of a
model that never predicts the class) the relative change is unstable or undefined; such a
metric is left out of Δm. `multitune.report.stats` applies the same threshold (and lists what
it leaves out), deciding once from the full-split single-task means.
"""


def delta_m(mt: Mapping[str, Mapping[str, float]], st: Mapping[str, Mapping[str, float]]) -> float:
    """Δm of a multi-task model against single-task results, as a FRACTION (x100 for %).

    LibMTL's definition (Maninis et al., 2019; Lin & Zhang, 2023, "LibMTL", eq. 4):
    ``Δm = 1/T sum_t 1/|M_t| sum_m s_m (M_mt,m - M_st,m) / |M_st,m|``, with ``s_m = +1`` when
    higher is better and ``-1`` otherwise; positive means multi-task is better. Metrics are those
    both sides report for the task, less those whose single-task value is smaller than
    `MIN_BASELINE` in magnitude (no stable relative change). A NaN value is not left out: it
    makes Δm NaN.

    Raises:
        ValueError: no single-task results, a task missing from them, or a task with no metric
            left (none shared, or every shared one below `MIN_BASELINE`). There is no Δm
            without single-task results.
    """
    if not st:
        raise ValueError("Δm needs single-task results; none were given")
    per_task = []
    for task, metrics in mt.items():
        if task not in st:
            raise ValueError(f"Δm: no single-task result for task {task!r}")
        base = st[task]
        shared = [m for m in metrics if m in base]
        if not shared:
            raise ValueError(f"Δm: task {task!r} shares no metric with its single-task result")
        rel = [
            (1.0 if higher_is_better(m) else -1.0) * (metrics[m] - base[m]) / abs(base[m])
            for m in shared
            if not abs(base[m]) < MIN_BASELINE
        ]
        if not rel:
            raise ValueError(
                f"Δm: every single-task value of task {task!r} ({', '.join(shared)}) is below "
                f"MIN_BASELINE={MIN_BASELINE:g} in magnitude: no relative change to measure"
            )
        per_task.append(float(np.mean(rel)))
    if not per_task:
        raise ValueError("Δm: no tasks")
    return float(np.mean(per_task))
