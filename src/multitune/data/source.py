"""Read `data.source`: a bundled dataset or the user's parquet/csv table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

from multitune.data.artifacts import arrow_lists
from multitune.data.builtin import BUILTINS
from multitune.data.features import STREAM_ROWS, streamed
from multitune.errors import DataError

BUILTIN_PREFIX = "builtin:"


def read_source(source: str, root: Path | None = None) -> pd.DataFrame:
    """The raw input table named by `data.source` (a relative path is taken from `root`)."""
    if source.startswith(BUILTIN_PREFIX):
        name = source.removeprefix(BUILTIN_PREFIX)
        if name not in BUILTINS:
            known = ", ".join(f"builtin:{n}" for n in BUILTINS)
            raise DataError(f"data.source: unknown bundled dataset '{source}'; known: {known}")
        return BUILTINS[name]()
    path = Path(source)
    if root is not None and not path.is_absolute():
        path = root / path
    if not path.is_file():
        raise DataError(f"data.source: no such file: {path}")
    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
        # Read a batch at a time (a whole read decodes each row group's list columns with
        # temporaries of several times their size); vector (list) columns stay Arrow data.
        file = streamed(path)
        batches = file.iter_batches(batch_size=STREAM_ROWS)
        table = pa.Table.from_batches(batches, schema=file.schema_arrow)
        return table.to_pandas(types_mapper=arrow_lists)
    except (pa.ArrowException, pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"data.source: cannot read {path}: {err}") from None
