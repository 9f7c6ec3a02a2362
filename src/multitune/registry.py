"""A typed registry: method name -> (config class, implementation).

Every pluggable family (fusion, sharing, weighting, freezing, sampling, encoders) keeps its
settings in `multitune.config.methods`: one pydantic config class per method, with a
``name: Literal["<key>"]`` field, and the family's union of them (`method_union`), which the
params schema takes. The implementations live above config, one module each, and register
against their config class in the family's `Registry`::

    class ConcatConfig(FusionConfig):  # config/methods/fusion.py
        name: Literal["concat"] = "concat"

    FusionMethod = method_union(AttentionConfig, ConcatConfig, ...)

    FUSIONS: Registry[Fusion] = Registry("fusion", FusionMethod)  # models/fusion/base.py

    @FUSIONS.register(ConcatConfig)  # models/fusion/concat.py
    class ConcatFusion(Fusion): ...

The family's ``__init__`` imports each implementation module, so importing the family
registers them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any, Generic, TypeVar, Union, get_args

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class MethodConfig(BaseModel):
    """Base of every method's config: strict, with a `name` discriminator."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str

    def for_tasks(self, tasks: list[str]) -> MethodConfig:
        """This config for a run that trains only `tasks` (a single-task or transfer run of
        a multi-task config): per-task options of other tasks are dropped. Default: as is."""
        return self


def method_union(*configs: type[MethodConfig]) -> Any:
    """A pydantic type: one family's config classes as a union discriminated by `name`, in
    their order here (the order in which a wrong name's message lists the valid ones)."""
    if len(configs) == 1:
        return configs[0]
    return Annotated[Union[configs], Field(discriminator="name")]  # noqa: UP007


def union_members(union: Any) -> tuple[type[MethodConfig], ...]:
    """The config classes of a `method_union`, in order."""
    if isinstance(union, type):
        return (union,)
    members = get_args(union)[0]  # Annotated[Union[...], Field(discriminator=...)]
    return get_args(members)


class Registry(Generic[T]):
    """Maps registry keys to config classes and implementations of one family.

    Args:
        family: The family's name, for messages.
        configs: The family's settings: its `method_union` (`multitune.config.methods`).
    """

    def __init__(self, family: str, configs: Any) -> None:
        self.family = family
        self.configs = union_members(configs)
        self._entries: dict[str, tuple[type[MethodConfig], type[T]]] = {}

    def register(self, config: type[MethodConfig]) -> Callable[[type[T]], type[T]]:
        """Class decorator: register an implementation under its config's `name` literal.

        Raises:
            ValueError: `config` is not one of the family's settings.
        """
        if config not in self.configs:
            raise ValueError(
                f"{config.__name__} is not a {self.family} config: add it to the family's "
                "union in multitune.config.methods"
            )
        (key,) = get_args(config.model_fields["name"].annotation)

        def decorator(impl: type[T]) -> type[T]:
            if key in self._entries:
                raise ValueError(f"{self.family} {key!r} is registered twice")
            self._entries[key] = (config, impl)
            return impl

        return decorator

    def names(self) -> list[str]:
        """Registered keys, in registration order."""
        return list(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def config(self, key: str) -> type[MethodConfig]:
        """The config class of method `key`."""
        return self._lookup(key)[0]

    def get(self, key: str) -> type[T]:
        """The implementation of method `key`."""
        return self._lookup(key)[1]

    def build(self, config: MethodConfig, *args: Any, **kwargs: Any) -> T:
        """Instantiate the implementation for `config`, passing the config first."""
        return self.get(config.name)(config, *args, **kwargs)  # type: ignore[call-arg]

    def _lookup(self, key: str) -> tuple[type[MethodConfig], type[T]]:
        try:
            return self._entries[key]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            raise KeyError(f"unknown {self.family} {key!r}; known: {known}") from None
