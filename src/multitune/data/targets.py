"""Target columns: normalized per task type, checked, and their classes resolved.

Categorical targets (classification, binary, distribution) become strings, multilabel and
token-classification targets lists of strings, regression targets floats; a missing or blank
cell means "unlabelled".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from multitune.config.tasks import (
    MultilabelTask,
    RegressionTask,
    TaskConfig,
    TokenClassificationTask,
)
from multitune.data.artifacts import TaskInfo
from multitune.errors import DataError


def _label(value: Any) -> str | None:
    """One categorical cell as a label string; None when unlabelled."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)  # 1.0 in a column with gaps is the label "1"
    text = str(value).strip()
    return text or None


def _labels(value: Any, separator: str | None) -> list[str] | None:
    """A list cell (a list, or labels joined by `separator`; None: by whitespace) as a list of
    labels; None if missing."""
    if isinstance(value, np.ndarray | list | tuple):
        return [s for s in (_label(v) for v in value) if s is not None]
    text = _label(value)
    if text is None:
        return None
    return [part.strip() for part in text.split(separator) if part.strip()]


def normalize_target(series: pd.Series, task: TaskConfig) -> pd.Series:
    """The task's column in its stored form (see module doc)."""
    if isinstance(task, RegressionTask):
        values = pd.to_numeric(series, errors="coerce").astype("float64")
        bad = series.notna() & values.isna()
        if bad.any():
            example = series[bad].iloc[0]
            raise DataError(
                f"column '{task.column}' of regression task '{task.name}' holds non-numbers, "
                f"e.g. {example!r} ({int(bad.sum())} rows)"
            )
        if not np.isfinite(values.dropna()).all():
            raise DataError(f"column '{task.column}' of task '{task.name}' holds inf")
        return values
    if isinstance(task, MultilabelTask | TokenClassificationTask):
        separator = task.separator if isinstance(task, MultilabelTask) else None
        return pd.Series(
            [_labels(v, separator) for v in series.to_numpy(dtype=object)],
            index=series.index,
            dtype=object,
        )
    return pd.Series(
        [_label(v) for v in series.to_numpy(dtype=object)], index=series.index, dtype="string"
    )


def resolve_task(series: pd.Series, task: TaskConfig) -> TaskInfo:
    """Check a normalized target column and resolve the task's classes.

    Raises:
        DataError: no labelled rows; one class (or one value) only; a label outside the
            declared `classes`; a binary task whose data holds other than two classes.
    """
    labelled = series.dropna()
    n = len(labelled)
    if n == 0:
        raise DataError(f"column '{task.column}' holds no labels for task '{task.name}'")
    if isinstance(task, RegressionTask):
        if labelled.nunique() < 2:
            raise DataError(
                f"task '{task.name}' has one value only ({labelled.iloc[0]:g}) among its {n} "
                "labelled rows; there is nothing to learn"
            )
        return TaskInfo(task, None, n)
    if isinstance(task, MultilabelTask | TokenClassificationTask):
        counts = pd.Series([x for cell in labelled for x in cell], dtype=object).value_counts()
    else:
        counts = labelled.value_counts()
    seen = sorted(str(c) for c in counts.index)
    if task.classes is not None:
        unknown = [c for c in seen if c not in task.classes]
        if unknown:
            shown = ", ".join(f"'{c}' ({int(counts[c])} rows)" for c in unknown[:5])
            raise DataError(
                f"label(s) {shown} of column '{task.column}' not among the declared classes "
                f"[{', '.join(task.classes)}]"
            )
        classes = list(task.classes)
    else:
        classes = seen
    if len(seen) < 2:
        only = f" ('{seen[0]}')" if seen else ""
        raise DataError(
            f"task '{task.name}' has one class only{only} among its {n} labelled rows; a task "
            "needs at least two"
        )
    if task.type == "binary" and len(classes) != 2:
        raise DataError(
            f"binary task '{task.name}' needs exactly 2 classes, column '{task.column}' holds "
            f"{len(classes)}: {', '.join(classes[:10])}; use type: classification"
        )
    weights = getattr(task, "class_weights", None)
    if isinstance(weights, dict) and (unknown := sorted(set(weights) - set(classes))):
        raise DataError(
            f"tasks.{task.name}.class_weights: {', '.join(unknown)} not a class of column "
            f"'{task.column}' (classes: {', '.join(classes[:10])}); fix the class names"
        )
    return TaskInfo(task.model_copy(update={"classes": classes}), classes, n)


def check_word_alignment(labels: pd.Series, texts: pd.Series, ids: pd.Series, task: str) -> None:
    """Each labelled row of a token task has one label per whitespace-separated word.

    Raises:
        DataError: a row whose label count differs from its word count (the first few named).
    """
    labelled = labels.notna().to_numpy()
    n_labels = labels[labelled].map(len).to_numpy()
    n_words = texts[labelled].fillna("").astype(str).str.split().map(len).to_numpy()
    bad = np.flatnonzero(n_labels != n_words)
    if len(bad):
        rows = ids[labelled].to_numpy()[bad]
        shown = ", ".join(
            f"{rows[i]} ({n_labels[b]} labels, {n_words[b]} words)" for i, b in enumerate(bad[:3])
        )
        raise DataError(
            f"token task '{task}': {len(bad)} row(s) have a label count that differs from the "
            f"number of words in the text (words are split at whitespace), e.g. row {shown}"
        )
