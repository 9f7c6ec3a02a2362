"""The ingest stage's library function: `data.source` -> normalized, checked table + tasks."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from multitune.config import Params
from multitune.config.schema import token_modality
from multitune.config.tasks import TaskConfig, TokenClassificationTask
from multitune.data.artifacts import TaskInfo, write_parquet
from multitune.data.columns import require_column
from multitune.data.ids import ID, column_ids, content_ids
from multitune.data.modalities import normalize_modalities
from multitune.data.source import read_source
from multitune.data.targets import check_word_alignment, normalize_target, resolve_task
from multitune.errors import DataError


@dataclass
class IngestResult:
    """What ingest produced: the table and its order by id, the resolved tasks, what it
    dropped.

    Attributes:
        table: The normalized rows in the source's order; vector columns are the source's
            Arrow data (see `multitune.data.modalities`), not copied.
        order: Positions of `table`'s rows sorted by id: the stored order, so that the output
            does not depend on the input's row order.
    """

    table: pd.DataFrame
    order: np.ndarray
    tasks: list[TaskInfo]
    dropped_invalid: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def frame(self) -> pd.DataFrame:
        """The table sorted by id, as stored (a copy; `write` streams it instead)."""
        return self.table.iloc[self.order].reset_index(drop=True)

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the table sorted by id (`data/dataset.parquet`), a batch of rows at a time:
        peak memory is the table plus one batch, not a sorted copy of it."""
        write_parquet(path, self.table, order=self.order)

    def summary(self) -> list[str]:
        """Lines for the console."""
        lines = [f"{len(self.table):,} rows"]
        if self.dropped_invalid:
            lines.append(f"dropped {self.dropped_invalid:,} rows with NaN/inf/missing vectors")
        for t in self.tasks:
            classes = f", {len(t.classes)} classes" if t.classes else ""
            lines.append(f"task {t.name} ({t.config.type}): {t.n_labelled:,} labelled{classes}")
        return lines + self.notes


def _stored_form(task: TaskConfig) -> str:
    return {"regression": "float", "multilabel": "list", "token_classification": "list"}.get(
        task.type, "string"
    )


def _targets(frame: pd.DataFrame, tasks: list[TaskConfig]) -> list[TaskInfo]:
    """Normalize each target column once and resolve every task on it."""
    forms: dict[str, tuple[str, int]] = {}
    infos = []
    for i, task in enumerate(tasks):
        form = _stored_form(task)
        if task.column in forms and forms[task.column][0] != form:
            other = forms[task.column][1]
            raise DataError(
                f"tasks[{i}].column: column '{task.column}' is also the target of tasks[{other}], "
                f"whose type stores it as a {forms[task.column][0]}, not a {form}"
            )
        try:
            if task.column not in forms:
                frame[task.column] = normalize_target(frame[task.column], task)
                forms[task.column] = (form, i)
            infos.append(resolve_task(frame[task.column], task))
        except DataError as err:
            raise DataError(f"tasks[{i}] ({task.name}): {err}") from None
    return infos


def ingest(params: Params, root: Path | None = None) -> IngestResult:
    """Read `data.source` and return the normalized table the other stages read.

    The table holds `id` (from `data.id_column`, or derived from the modality and target
    cells, see `multitune.data.ids`), the modality source columns, the target columns and any
    other columns of the source; rows are sorted by id so the output does not depend on the
    input's row order.

    Raises:
        DataError: a missing column, duplicate ids, an unusable task, an empty text column,
            invalid numeric/vector cells (unless `data.invalid_rows: drop`); each message
            starts with the params key to fix.
    """
    data = params.data
    raw = read_source(data.source, root).reset_index(drop=True)
    for i, task in enumerate(params.tasks):
        require_column(raw, task.column, f"tasks[{i}].column")
    if data.id_column is None and ID in raw.columns:
        raise DataError(
            f"data.id_column: the table has a column '{ID}' but data.id_column is null; set "
            f"data.id_column: {ID} to use it as the row id, or rename the column"
        )
    frame, dropped = normalize_modalities(raw, data)
    tasks = _targets(frame, list(params.tasks))
    modality_columns = list(
        dict.fromkeys(c for m in data.modalities.values() for c in m.source_columns)
    )
    target_columns = list(dict.fromkeys(t.column for t in params.tasks))
    content = list(dict.fromkeys(modality_columns + target_columns))
    if data.id_column is not None:
        ids = column_ids(frame, data.id_column)
    else:
        ids = content_ids(frame, content)
    rest = [c for c in frame.columns if c not in set(content) | {ID}]
    out = frame[content + rest].copy()
    out.insert(0, ID, pd.array(ids, dtype="string"))
    for task in params.tasks:
        if isinstance(task, TokenClassificationTask):
            text = data.modalities[token_modality(data, task)].source_columns[0]
            check_word_alignment(out[task.column], out[text], out[ID], task.name)
    order = np.argsort(out[ID].to_numpy(dtype=object), kind="stable")
    return IngestResult(out, order, tasks, dropped)
