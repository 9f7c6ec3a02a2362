"""What the served model answers: the network's raw outputs -> the served columns.

Output, one row per input row:
  * `<task>`: the predicted label (classification, binary, distribution), the list of
    predicted labels (multilabel, p >= 0.5), or the value in original units (regression);
  * `<task>_proba`: the class probabilities in the order of `spec.json`'s classes
    (categorical tasks only);
  * for a token task, `<task>` is the list of predicted labels, one per word of the text
    (every word, however long the text: a text longer than the encoder's window is read
    through overlapping windows).

Params: `tasks` (a list) keeps a subset of tasks; `task` (one name) gives the single-task
view old single-output callers expect: columns `prediction` and, for categorical tasks,
`probabilities`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multitune.errors import UserError

PROBA_SUFFIX = "_proba"


@dataclass(frozen=True)
class TaskSpec:
    """What the served model needs to know about one task."""

    name: str
    type: str
    classes: list[str] | None


def _as_proba(values: np.ndarray, task: TaskSpec) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if task.type == "binary" and (values.ndim == 1 or values.shape[1] == 1):
        p = values.reshape(-1)
        return np.stack([1.0 - p, p], axis=1)
    return values


TokenWords = tuple[np.ndarray, np.ndarray, np.ndarray]
"""A token modality's `(words, offsets, counts)`: the word each packed token labels (-1 for
none), the row offsets, and each row's number of words."""


def word_labels(scores: np.ndarray, words: np.ndarray, count: int) -> np.ndarray:
    """One class index per word of a row, from its tokens' `(T, C)` scores.

    Each word takes its labelling token's class (`words[t] == w`). A word the tokenizer gave
    no token (a lone zero-width character, say) takes the preceding word's class, the
    following one's at the start: the list always has `count` entries, aligned to words.
    """
    at = np.flatnonzero((words >= 0) & (words < count))
    labels = np.full(count, -1, dtype=np.int64)
    labels[words[at]] = scores[at].argmax(-1)
    seen = np.flatnonzero(labels >= 0)
    if len(seen) < count:
        if not len(seen):
            return np.full(count, int(scores[0].argmax(-1)) if len(scores) else 0)
        filled = np.maximum.accumulate(np.where(labels >= 0, np.arange(count), -1))
        labels = labels[np.where(filled >= 0, filled, seen[0])]
    return labels


def format_predictions(
    raw: Mapping[str, np.ndarray],
    tasks: Sequence[TaskSpec],
    wanted: Sequence[str],
    token_words: Mapping[str, TokenWords] | None = None,
) -> pd.DataFrame:
    """Turn the network's per-task outputs into the served columns.

    Args:
        raw: Task -> probabilities `(n, C)` (binary may be `(n,)` = p(classes[1])) or values
            `(n,)` for regression, as `multitune.training.predict` returns them.
        tasks: Every task of the model, in order.
        wanted: The tasks to return.
        token_words: Token task -> `(words, offsets, counts)` (`TokenWords`): the word each
            packed token labels (-1 for none; a word has at most one), the row offsets and
            each row's number of words.

    Returns:
        A frame with `<task>` and `<task>_proba` columns (see the module docstring).
    """
    out: dict[str, Any] = {}
    for task in tasks:
        if task.name not in wanted:
            continue
        values = raw[task.name]
        if task.type == "regression" or task.classes is None:
            out[task.name] = np.asarray(values, dtype=np.float64).reshape(-1)
            continue
        classes = np.asarray(task.classes, dtype=object)
        if task.type == "token_classification":
            words, offsets, counts = (token_words or {})[task.name]
            out[task.name] = [
                list(classes[word_labels(values[i], words[offsets[i] : offsets[i + 1]], n)])
                for i, n in enumerate(counts)
            ]
            continue
        proba = _as_proba(values, task)
        if task.type == "multilabel":
            out[task.name] = [list(classes[row >= 0.5]) for row in proba]
        else:
            out[task.name] = classes[np.argmax(proba, axis=1)]
        out[task.name + PROBA_SUFFIX] = [row for row in proba]
    return pd.DataFrame(out)


def single_task_view(frame: pd.DataFrame, task: str) -> pd.DataFrame:
    """One task's columns renamed `prediction` / `probabilities` (old single-output callers)."""
    view = {"prediction": frame[task]}
    if task + PROBA_SUFFIX in frame:
        view["probabilities"] = frame[task + PROBA_SUFFIX]
    return pd.DataFrame(view)


def selected_tasks(
    params: Mapping[str, Any] | None, names: Sequence[str]
) -> tuple[list[str], str]:
    """The tasks asked by the call's params (all of `names` by default), and the one task of
    the single-task view ("" when not asked).

    Raises:
        UserError: an asked task the model does not predict.
    """
    params = dict(params or {})
    single = str(params.get("task") or "")
    asked = params.get("tasks")
    wanted = [single] if single else list(asked) if asked is not None and len(asked) else names
    unknown = [t for t in wanted if t not in names]
    if unknown:
        raise UserError(f"unknown task(s) {', '.join(unknown)}; this model predicts {names}")
    return list(wanted), single
