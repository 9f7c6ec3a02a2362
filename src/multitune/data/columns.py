"""Column look-ups that fail with a message naming the params key and the likely fix."""

from __future__ import annotations

import difflib

import pandas as pd

from multitune.errors import DataError


def require_column(frame: pd.DataFrame, column: str, key: str) -> None:
    """Raise a `DataError` at params key `key` when `frame` lacks `column`.

    The message lists the table's columns and, for a near miss, the closest one:
    ``tasks[2].column: column 'spaker' not in the table; columns are: ...; did you mean
    'speaker'?``
    """
    if column in frame.columns:
        return
    names = [str(c) for c in frame.columns]
    close = difflib.get_close_matches(column, names, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    shown = ", ".join(names[:30]) + (f", ... ({len(names)} in all)" if len(names) > 30 else "")
    raise DataError(f"{key}: column '{column}' not in the table; columns are: {shown}{hint}")


def describe_rows(positions: pd.Index | list[int], limit: int = 5) -> str:
    """`rows 3, 8, 11 and 4 more` for error messages (0-based rows of the input table)."""
    rows = [int(p) for p in list(positions)[:limit]]
    more = len(positions) - len(rows)
    text = ", ".join(map(str, rows))
    return f"row{'s' if len(positions) > 1 else ''} {text}" + (f" and {more} more" if more else "")
