"""How one knob of `sweep.space` is written and checked (read `multitune.config.space` first).

A value knob is `Fixed`, a `Distribution` or a `Choice`; a method knob (`MethodKnob`) picks
registered methods, each with knobs of its own. `check_values` and `MethodKnob.check` check a
knob against the params field it sets, so a bad space fails when params load.
"""

from __future__ import annotations

import difflib
import json
import math
import types
import typing
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    RootModel,
    Tag,
    TypeAdapter,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo

from multitune.config._base import StrictModel
from multitune.config._messages import value_hint


class Distribution(StrictModel):
    """A numeric range: `uniform`/`loguniform` floats, `int`/`logint` integers."""

    dist: Literal["uniform", "loguniform", "int", "logint"] = Field(
        description="uniform | loguniform (floats), int | logint (integers)."
    )
    low: float = Field(description="Lower bound (inclusive).")
    high: float = Field(description="Upper bound (inclusive).")
    step: float | None = Field(
        default=None, gt=0, description="Discretization step (uniform and int only)."
    )

    @model_validator(mode="after")
    def _bounds(self) -> Distribution:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.dist.startswith("log") and self.low <= 0:
            raise ValueError(f"a {self.dist} range needs low > 0 (got {self.low:g})")
        if self.is_int and not (self.low.is_integer() and self.high.is_integer()):
            raise ValueError(f"an {self.dist} range needs whole-number bounds")
        if self.step is not None and self.dist.startswith("log"):
            raise ValueError(f"step is not allowed with {self.dist}")
        return self

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: Any) -> Any:
        return {k: v for k, v in handler(self).items() if v is not None}

    @property
    def is_int(self) -> bool:
        """Whether values are integers."""
        return self.dist in ("int", "logint")

    @property
    def is_log(self) -> bool:
        """Whether values are sampled on a log scale."""
        return self.dist.startswith("log")

    def corners(self) -> list[float | int]:
        """The bounds, typed like the sampled values (used to validate the range)."""
        if self.is_int:
            return [int(self.low), int(self.high)]
        return [self.low, self.high]


class Choice(StrictModel):
    """A categorical knob: one of the listed values."""

    choice: list[Any] = Field(min_length=1, description="The values to choose from.")


class Fixed(RootModel[Any]):
    """A knob held at one value."""


def _knob_kind(value: Any) -> str:
    if isinstance(value, Distribution | Choice | Fixed):
        return {Distribution: "dist", Choice: "choice", Fixed: "fixed"}[type(value)]
    if isinstance(value, dict) and "dist" in value:
        return "dist"
    if isinstance(value, dict) and "choice" in value:
        return "choice"
    return "fixed"


Knob = Annotated[
    Annotated[Distribution, Tag("dist")]
    | Annotated[Choice, Tag("choice")]
    | Annotated[Fixed, Tag("fixed")],
    Discriminator(_knob_kind),
]
"""A fixed value, a `{dist: ...}` range, or a `{choice: [...]}` list."""


def knob_values(knob: Distribution | Choice | Fixed) -> list[Any]:
    """Representative values of a knob: its fixed value, its choices, or its bounds."""
    if isinstance(knob, Distribution):
        return knob.corners()
    if isinstance(knob, Choice):
        return list(knob.choice)
    return [knob.root]


def knob_label(value: Any) -> Any:
    """How a choice appears to the search: itself if a primitive, else its JSON text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True)


class MethodOption(BaseModel):
    """One method a method knob may pick, with knobs for its own options."""

    name: str
    params: dict[str, Knob] = Field(default_factory=dict)

    @model_serializer
    def _raw(self) -> Any:
        if not self.params:
            return self.name
        return {"name": self.name, **{k: v.model_dump() for k, v in self.params.items()}}


class MethodKnob(BaseModel):
    """A method family knob: one method (fixed) or a choice among methods.

    Written as `name`, `{name: x, <option>: <knob>, ...}` or `{choice: [<either>, ...]}`.
    """

    options: list[MethodOption] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _normalize(cls, value: Any) -> Any:
        if isinstance(value, MethodKnob):
            return value
        if isinstance(value, dict) and "choice" in value:
            extra = sorted(set(value) - {"choice"})
            if extra:
                raise ValueError(f"a choice of methods takes only `choice`; got also {extra}")
            items = value["choice"]
            if not isinstance(items, list) or not items:
                raise ValueError("`choice` must be a non-empty list of methods")
        else:
            items = [value]
        return {"options": [_option(item) for item in items]}

    @model_validator(mode="after")
    def _unique(self) -> MethodKnob:
        names = [o.name for o in self.options]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"method(s) listed twice in the choice: {', '.join(dupes)}")
        return self

    @model_serializer
    def _raw(self) -> Any:
        if len(self.options) == 1:
            return self.options[0].model_dump()
        return {"choice": [o.model_dump() for o in self.options]}

    def check(self, family_type: Any) -> None:
        """Check each method against its family: registered, known options, valid values.

        Args:
            family_type: The params field type of the family (a union of config classes
                discriminated by `name`).

        Raises:
            ValueError: one message naming the method, the option and the problem.
        """
        configs = method_configs(family_type)
        for option in self.options:
            if option.name not in configs:
                close = difflib.get_close_matches(option.name, list(configs), n=1, cutoff=0.5)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise ValueError(
                    f"unknown method '{option.name}'{hint} Known: {', '.join(configs)}."
                )
            config = configs[option.name]
            for key, knob in option.params.items():
                if key == "name" or key not in config.model_fields:
                    allowed = [f for f in config.model_fields if f != "name"]
                    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
                    hint = f"; did you mean '{close[0]}'?" if close else ""
                    raise ValueError(
                        f"{option.name}: unknown option '{key}'{hint} "
                        f"Options: {', '.join(allowed) or '(none)'}."
                    )
                check_values(f"{option.name}.{key}", knob, config.model_fields[key])


def _option(item: Any) -> dict[str, Any]:
    if isinstance(item, MethodOption):
        return item.model_dump()
    if isinstance(item, str):
        return {"name": item}
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        return {"name": item["name"], "params": {k: v for k, v in item.items() if k != "name"}}
    raise ValueError(f"expected a method name or {{name: ..., <option>: ...}}, got {item!r}")


def method_configs(family_type: Any) -> dict[str, type[BaseModel]]:
    """`{name: config class}` of a family's discriminated union (or single config) type."""
    members = _members(family_type)
    out: dict[str, type[BaseModel]] = {}
    for member in members:
        if isinstance(member, type) and issubclass(member, BaseModel):
            info = member.model_fields.get("name")
            for literal in get_args(info.annotation) if info else ():
                out[str(literal)] = member
    return out


def is_per_task(info: FieldInfo) -> bool:
    """Whether a field is a per-task mapping (`dict[str, X]`): knobs apply per task."""
    return get_origin(_strip(info.annotation)) is dict


def check_values(where: str, knob: Distribution | Choice | Fixed, info: FieldInfo) -> None:
    """Validate a knob's fixed value, choices or bounds against the target field's type.

    Raises:
        ValueError: `<where>: <pydantic's message> (got <value>)`.
    """
    annotation: Any = info.annotation
    metadata = list(info.metadata)
    if is_per_task(info) and not isinstance(knob, Fixed):
        # Sampled once per task: each value is checked against the mapping's value type.
        annotation, metadata = get_args(_strip(annotation))[-1], []
    if metadata:
        annotation = Annotated[annotation, *metadata]
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    for value in knob_values(knob):
        try:
            adapter.validate_python(value)
        except ValidationError as err:
            first = err.errors()[0]
            hint = value_hint(first["type"], value, dict(first.get("ctx", {})))
            raise ValueError(f"{where}: {first['msg']} (got {value!r}){hint}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where}: must be finite (got {value!r})")


def _strip(tp: Any) -> Any:
    while get_origin(tp) is typing.Annotated:
        tp = get_args(tp)[0]
    members = [m for m in _members(tp) if m is not type(None)]
    if get_origin(tp) in (Union, types.UnionType) and len(members) == 1:
        return _strip(members[0])
    return tp


def _members(tp: Any) -> list[Any]:
    while get_origin(tp) is typing.Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        out: list[Any] = []
        for arg in get_args(tp):
            out.extend(_members(arg))
        return out
    return [tp]
