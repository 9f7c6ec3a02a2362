"""A typed registry: method name -> (config class, implementation).

Every pluggable family (fusion, sharing, weighting, freezing, sampling, encoders) keeps one
`Registry`. A method is one module that defines a pydantic config class with a
``name: Literal["<key>"]`` field and registers its implementation::

    class ConcatConfig(MethodConfig):
        name: Literal["concat"] = "concat"

    @FUSIONS.register(ConcatConfig)
    class ConcatFusion(Fusion): ...

The family's ``__init__`` imports each method module, and the params schema takes
``FUSIONS.config_type()``: a union discriminated by ``name``.
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


class Registry(Generic[T]):
    """Maps registry keys to config classes and implementations of one family."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, tuple[type[MethodConfig], type[T]]] = {}

    def register(self, config: type[MethodConfig]) -> Callable[[type[T]], type[T]]:
        """Class decorator: register an implementation under its config's `name` literal."""
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

    def config_type(self) -> Any:
        """A pydantic type: the union of every registered config, discriminated by `name`."""
        configs = tuple(cfg for cfg, _ in self._entries.values())
        if len(configs) == 1:
            return configs[0]
        return Annotated[Union[configs], Field(discriminator="name")]  # noqa: UP007

    def _lookup(self, key: str) -> tuple[type[MethodConfig], type[T]]:
        try:
            return self._entries[key]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            raise KeyError(f"unknown {self.family} {key!r}; known: {known}") from None
