"""A mutex in the MLflow model registry, so that registrations of one model run one at a time.

The registry offers no compare-and-set on an alias, but it refuses a second registered model
of a name it holds (the tracking store's unique constraint, answered RESOURCE_ALREADY_EXISTS
by a SQL store and by a server alike). The lock is therefore a registered model with no
versions, `<name>.lock`: creating it acquires the lock, deleting it releases it. Every process
that talks to the store sees the same lock, on any host, with no extra service.

The lock model's tags say who holds it (`owner`, `host`, `pid`, `time`, and a `token` that
only its holder knows to be its own); its description says what it is and how to remove it.
It lives for the few seconds a registration takes. One older than `STALE_S` (its holder was
killed) is broken with a warning; the age is read from the store's creation timestamp,
so the hosts' clocks are assumed to agree within minutes. Breaking is itself serialised by
a second lock (`<name>.lock.break`, held for milliseconds), so two waiters that find the
same dead lock cannot delete a lock one of them has just taken.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from multitune.errors import UserError

__all__ = ["LOCK_SUFFIX", "STALE_S", "WAIT_S", "lock_name", "registry_lock"]

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
STALE_S = 600.0
"""A lock older than this is taken for one whose holder was killed, and broken."""
WAIT_S = 900.0
"""How long to wait for the lock before giving up (longer than `STALE_S`, so a waiter
outlives a dead holder's lock)."""
_BREAK_SUFFIX = ".break"
_FIRST_DELAY_S = 0.05
_MAX_DELAY_S = 1.0


def lock_name(name: str) -> str:
    """The registered model that locks registrations of `name`."""
    return f"{name}{LOCK_SUFFIX}"


@dataclass(frozen=True)
class _Held:
    """A lock model as read back from the store."""

    token: str
    age_s: float
    who: str


def _read(client: MlflowClient, lock: str) -> _Held | None:
    try:
        model = client.get_registered_model(lock)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    tags = dict(model.tags or {})
    age_s = time.time() - (model.creation_timestamp or 0) / 1000
    who = (
        f"{tags.get('owner', '?')}@{tags.get('host', '?')} pid {tags.get('pid', '?')} "
        f"since {tags.get('time', '?')}"
    )
    return _Held(tags.get("token", ""), age_s, who)


def _create(client: MlflowClient, lock: str, token: str, purpose: str) -> bool:
    """Create the lock model; False when it exists already (somebody holds the lock)."""
    try:
        owner = getpass.getuser()
    except (KeyError, OSError):
        owner = str(os.getuid()) if hasattr(os, "getuid") else "?"
    tags = {
        "owner": owner,
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "token": token,
    }
    description = (
        f"multitune lock: held while {purpose}; deleted when done. If no multitune "
        f"registration is running, delete this model (it is broken after {STALE_S:.0f} s)."
    )
    try:
        client.create_registered_model(lock, tags=tags, description=description)
    except MlflowException as err:
        if err.error_code == "RESOURCE_ALREADY_EXISTS":
            return False
        raise
    return True


def _delete(client: MlflowClient, lock: str) -> None:
    with contextlib.suppress(MlflowException):  # gone already: nothing to release
        client.delete_registered_model(lock)


def _break_stale(client: MlflowClient, lock: str, seen: _Held, stale_s: float) -> bool:
    """Delete `lock` if it is still the stale one `seen`, under the break lock.

    Returns:
        Whether to try to take `lock` again now: False when another process is breaking it.
    """
    breaker = lock + _BREAK_SUFFIX
    if not _create(client, breaker, uuid.uuid4().hex, f"breaking the stale lock {lock!r}"):
        other = _read(client, breaker)
        if other is not None and other.age_s > stale_s:  # a breaker killed mid-break
            logger.warning("deleting the stale lock %r (%s)", breaker, other.who)
            _delete(client, breaker)
        return False
    try:
        # Read again under the break lock: another breaker may have replaced it meanwhile.
        again = _read(client, lock)
        if again is not None and again.token == seen.token:
            logger.warning(
                "breaking the registry lock %r held by %s: %.0f s old, older than %.0f s "
                "(its holder was killed?)",
                lock,
                again.who,
                again.age_s,
                stale_s,
            )
            _delete(client, lock)
    finally:
        _delete(client, breaker)
    return True


def _acquire(client: MlflowClient, lock: str, purpose: str, wait_s: float, stale_s: float) -> str:
    """Take the lock (retrying with jittered backoff); return the token that proves it ours."""
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait_s
    delay = _FIRST_DELAY_S
    told = False
    while True:
        if _create(client, lock, token, purpose):
            return token
        seen = _read(client, lock)
        if seen is None:  # released between our two calls
            continue
        if seen.token == token:  # our create went through, but its answer was lost (retried)
            return token
        if seen.age_s > stale_s and _break_stale(client, lock, seen, stale_s):
            continue
        if time.monotonic() >= deadline:
            raise UserError(
                f"timed out after {wait_s:.0f} s waiting for the registry lock {lock!r} "
                f"(held by {seen.who}); if no registration is running, delete the "
                f"registered model {lock!r} (MLflow UI, or "
                f"MlflowClient().delete_registered_model({lock!r})) and rerun"
            )
        if not told:
            logger.info("waiting for the registry lock %r held by %s", lock, seen.who)
            told = True
        time.sleep(delay * (0.5 + random.random()))
        delay = min(2 * delay, _MAX_DELAY_S)


def _release(client: MlflowClient, lock: str, token: str, stale_s: float) -> None:
    """Delete the lock if it is still ours; warn (never raise) otherwise."""
    try:
        seen = _read(client, lock)
        if seen is not None and seen.token == token:
            client.delete_registered_model(lock)
            return
        logger.warning(
            "the registry lock %r was broken while this process held it (held over %.0f s?)",
            lock,
            stale_s,
        )
    except MlflowException as err:
        logger.warning(
            "could not release the registry lock %r (%s); delete that registered model if "
            "it stays",
            lock,
            str(err).splitlines()[0] if str(err) else type(err).__name__,
        )


@contextlib.contextmanager
def registry_lock(
    client: MlflowClient,
    name: str,
    *,
    purpose: str = "",
    wait_s: float = WAIT_S,
    stale_s: float = STALE_S,
) -> Iterator[str]:
    """Hold the registry lock of `name` for the `with` block; yields the lock's name.

    Args:
        client: The registry the lock lives in (the one the block writes to).
        name: The registered model whose registrations are serialised.
        purpose: What the holder does, for the lock's description.
        wait_s: Give up after waiting this long (see `WAIT_S`).
        stale_s: Break a lock older than this (see `STALE_S`).

    Raises:
        UserError: The lock was not free within `wait_s`; the message names it and says how
            to remove it.
    """
    lock = lock_name(name)
    token = _acquire(
        client, lock, purpose or f"registering a version of {name!r}", wait_s, stale_s
    )
    try:
        yield lock
    finally:
        _release(client, lock, token, stale_s)
