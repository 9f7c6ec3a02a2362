"""Errors a user can fix. They are printed as one message, never as a traceback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar


class UserError(Exception):
    """A mistake in the user's input: params, data, environment.

    The message names the thing that is wrong and how to fix it. Entry points print it and
    exit non-zero without a traceback.
    """

    exit_code = 2


class ConfigError(UserError):
    """params.yaml does not validate."""


class DataError(UserError):
    """The input table or a derived artifact is not what the params describe."""


class NoSpaceError(UserError):
    """The disk (or the user's quota) filled up while an output was being written.

    Attributes:
        target: The output that could not be written.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        super().__init__(f"no space left on device writing {target}: free some space and rerun")

    def __reduce__(self) -> tuple[type[NoSpaceError], tuple[str]]:
        return type(self), (self.target,)  # raised in a worker, unpickled in the driver


class TrackingServerLost(UserError):
    """The MLflow tracking server stopped answering while a stage was running.

    Attributes:
        uri: The server's URI.
    """

    def __init__(self, uri: str, reason: str) -> None:
        self.uri, self.reason = uri, reason
        super().__init__(
            f"the tracking server {uri} stopped answering ({reason}): restart it and rerun "
            "the stage; runs that finished are read back, not retrained"
        )

    def __reduce__(self) -> tuple[type[TrackingServerLost], tuple[str, str]]:
        return type(self), (self.uri, self.reason)


def error_chain(err: BaseException) -> Iterator[BaseException]:
    """`err` and every error it was raised from or while handling (`__cause__` and
    `__context__`, both followed), each once, nearest first."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        at = todo.pop(0)
        if id(at) in seen:
            continue
        seen.add(id(at))
        yield at
        todo += [e for e in (at.__cause__, at.__context__) if e is not None]


Explainer = Callable[[BaseException], "UserError | None"]
"""Tells whether an unexpected error is a fault a user meets: the `UserError` to print
instead, or None."""

_explainers: list[Explainer] = []
E = TypeVar("E", bound=Callable[..., Any])


def explains_faults(explainer: E) -> E:
    """Decorator: an entry point under `multitune.console.guarded` asks `explainer` about
    every unexpected error. The package that knows a fault registers it (the tracking
    store's, in `multitune.tracking.connection`), so the console needs none of them."""
    _explainers.append(explainer)
    return explainer


def explain_fault(err: BaseException) -> UserError | None:
    """The fault a registered explainer finds behind `err`, if any (`explains_faults`)."""
    for explainer in _explainers:
        explained = explainer(err)
        if explained is not None:
            return explained
    return None
