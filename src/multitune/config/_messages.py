"""Hints the params errors add to pydantic's messages."""

from __future__ import annotations

import difflib
import math
import re
from typing import Any


def value_hint(kind: str, got: Any, ctx: dict[str, Any]) -> str:
    """The likely fix of a value pydantic refused, where one can be guessed.

    Args:
        kind: The pydantic error type.
        got: The refused value.
        ctx: The error's context (`expected` of a literal error).

    Returns:
        `; did you mean 'x'?` for a misspelt choice, how to write a whole number YAML read as
        text, or "".
    """
    if kind == "literal_error" and isinstance(got, str):
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        lowered = {e.lower(): e for e in expected}
        close = difflib.get_close_matches(got.lower(), list(lowered), n=1, cutoff=0.5)
        return f"; did you mean '{lowered[close[0]]}'?" if close else ""
    if kind == "int_parsing" and isinstance(got, str):
        try:
            number = float(got)
        except ValueError:
            return ""
        if math.isfinite(number) and number.is_integer():
            # YAML 1.1 (PyYAML) reads 1e3 as a string: only 1.0e+3 is a number.
            return f"; write it as a whole number: {int(number)}"
    return ""
