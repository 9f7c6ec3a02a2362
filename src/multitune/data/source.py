"""Read `data.source`: a bundled dataset or the user's parquet/csv table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from multitune.data.builtin import BUILTINS
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
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"data.source: cannot read {path}: {err}") from None
