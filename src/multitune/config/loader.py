"""The only reader of params.yaml: YAML -> typed `Params`, or one clear `ConfigError`."""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Tag, ValidationError
from pydantic_core import ErrorDetails

from multitune.config._messages import value_hint
from multitune.config.schema import Params
from multitune.errors import ConfigError

DEFAULT_PATH = Path("params.yaml")


def load_params(path: str | os.PathLike[str] = DEFAULT_PATH) -> Params:
    """Read and validate params.yaml.

    Raises:
        ConfigError: the file is missing, is not YAML, or does not match the schema. The
            message names the file and, per problem, the key path, what was expected and,
            for a misspelt key, the closest valid key.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file; run from the project root or pass --params"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return validate_params(raw, source=str(path))


def validate_params(raw: dict[str, Any], source: str = "params.yaml") -> Params:
    """Validate an already-parsed params mapping (the Ray trainable's sampled configs too)."""
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        lines = [describe_error(e) for e in err.errors()]
        head = f"{source}: " if len(lines) == 1 else f"{source}: {len(lines)} problems:\n  "
        raise ConfigError(head + "\n  ".join(lines)) from None


def params_problems(raw: dict[str, Any]) -> list[str]:
    """What is wrong with a params mapping: one `describe_error` line per problem, none when
    it validates."""
    try:
        Params.model_validate(raw)
    except ValidationError as err:
        return [describe_error(e) for e in err.errors()]
    return []


def describe_error(error: ErrorDetails) -> str:
    """One line for one pydantic error: `key.path: what is wrong (and the likely fix)`."""
    loc = error["loc"]
    path, parent = _resolve(Params, loc)
    where = path or "(top level)"
    kind = error["type"]
    if not path and kind == "value_error":  # a cross-check: its message names the keys
        return error["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        allowed = _field_names(parent)
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        moved = getattr(_unwrap(parent), "KEY_HINTS", {}).get(key)
        if moved:
            return f"{where}: unknown key '{key}'; {moved}"
        valid = f" Valid keys here: {', '.join(allowed)}." if allowed else ""
        return f"{where}: unknown key '{key}'{hint}{valid}"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        tag = str(ctx.get("tag", ""))
        expected = [t.strip().strip("'") for t in str(ctx.get("expected_tags", "")).split(",")]
        close = difflib.get_close_matches(tag, expected, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        field = ctx.get("discriminator", "name").strip("'")
        return (
            f"{where}.{field}: unknown value '{tag}'{hint} Expected one of: {', '.join(expected)}."
        )
    if kind == "missing":
        return f"{where}: required key is missing"
    got = error.get("input")
    shown = "" if isinstance(got, dict | list) else f" (got {_yaml_value(got)})"
    if kind in ("bool_parsing", "bool_type"):
        return f"{where}: expected true or false{shown}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        keys = _field_names(_resolve(Params, loc, at=True)[1])
        if keys:
            return f"{where}: expected a mapping of its keys ({', '.join(keys)}){shown}"
    msg = error["msg"].removeprefix("Value error, ")
    if "(got " in msg:  # the check showed the value itself
        shown = ""
    head, sep, rest = msg.partition(": ")
    if kind == "value_error" and sep and head in _field_names(_resolve(Params, loc, at=True)[1]):
        where, msg = f"{where}.{head}", rest  # a section's check that names one of its keys
    hint = value_hint(kind, got, error.get("ctx", {}))
    if kind in _TYPE_ERRORS and loc:
        hint += _null_hint(parent, loc[-1])
    return f"{where}: {msg}{shown}{hint}"


_TYPE_ERRORS = (
    "int_parsing",
    "int_type",
    "int_from_float",
    "float_parsing",
    "float_type",
    "string_type",
)
"""Errors of a value of the wrong type, where a field that takes null says so."""


def _null_hint(parent: Any, key: int | str) -> str:
    """`; or null (what null means)` when the field `key` of model `parent` takes null."""
    parent = _unwrap(parent)
    if not (isinstance(parent, type) and issubclass(parent, BaseModel)):
        return ""
    info = parent.model_fields.get(str(key))
    if info is None or type(None) not in get_args(info.annotation):
        return ""
    meaning = re.search(r"null: (.+?)(?:\.\s|\.$|;|$)", info.description or "")
    return f"; or null ({meaning.group(1)})" if meaning else "; or null"


def _yaml_value(value: Any) -> str:
    """A scalar as the user wrote it: YAML's null, true and false; others as Python shows
    them (strings quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


def _resolve(root: Any, loc: tuple[int | str, ...], at: bool = False) -> tuple[str, Any]:
    """Follow a pydantic error location through the schema.

    Returns the user-facing key path (`tasks[1].column`; union tags dropped) and the type at
    the parent of the last element, so unknown keys can be matched against valid ones (with
    `at`, the type at the location itself).
    """
    parts: list[str] = []
    tp: Any = root
    parent: Any = root
    for item in loc:
        parent = tp
        tp, consumed_as_tag = _step(tp, item)
        if consumed_as_tag:
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts), tp if at else parent


def _step(tp: Any, item: int | str) -> tuple[Any, bool]:
    """The type one location element below `tp`, and whether the element was a union tag."""
    tp = _unwrap(tp)
    for arg in get_args(tp) if get_origin(tp) in (Union, types.UnionType) else ():
        # A union discriminated by a function tags its members (`space.Knob`).
        tags = get_args(arg)[1:] if get_origin(arg) is typing.Annotated else ()
        if any(isinstance(t, Tag) and t.tag == item for t in tags):
            return _unwrap(arg), True
    members = _union_members(tp)
    if members:
        for member in members:
            if isinstance(member, type) and issubclass(member, BaseModel):
                for field in ("name", "type"):
                    info = member.model_fields.get(field)
                    if info is not None and item in get_args(info.annotation):
                        return member, True
        return None, False
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        info = tp.model_fields.get(str(item))
        return (info.annotation if info else None), False
    origin = get_origin(tp)
    if origin in (list, tuple, dict):
        args = get_args(tp)
        return (args[-1] if args else None), False
    return None, False


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is typing.Annotated:
        tp = get_args(tp)[0]
    members = _union_members(tp)
    non_none = [m for m in members if m is not type(None)]
    if members and len(non_none) == 1:
        return _unwrap(non_none[0])
    return tp


def _union_members(tp: Any) -> list[Any]:
    if get_origin(tp) in (Union, types.UnionType):
        return [_unwrap(a) if get_origin(a) is typing.Annotated else a for a in get_args(tp)]
    return []


def _field_names(tp: Any) -> list[str]:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []
