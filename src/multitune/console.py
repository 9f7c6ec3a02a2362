"""The one place user-facing output goes, and the guard every entry point runs under."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import NoReturn, ParamSpec, TypeVar

from rich.console import Console
from rich.markup import escape

from multitune import logs
from multitune.errors import UserError, explain_fault
from multitune.io import no_space_error

console = Console(stderr=True, highlight=False)
logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Run an entry point: a `UserError` becomes one line on stderr and a non-zero exit.

    So do the faults a user meets rather than makes, however deep they are raised: a full
    disk (`OSError` ENOSPC/EDQUOT anywhere in the error's chain, or under the SQLite
    tracking store) and a tracking server that stopped answering mid-stage
    (`multitune.tracking.connection.lost_server`): those `multitune.errors.explains_faults`
    registered.
    Anything else keeps its traceback.
    Other libraries' progress bars and chatter are left out of its output unless
    MULTITUNE_LOG_LEVEL asks for them (`multitune.logs`).
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            logs.configure()
            return fn(*args, **kwargs)
        except UserError as err:
            _fail(err)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            sys.exit(130)
        except Exception as err:
            explained = _fault(err)
            if explained is None:
                raise
            logger.debug("%s", explained, exc_info=err)
            _fail(explained)

    return wrapper


def _fail(err: UserError) -> NoReturn:
    console.print(f"[bold red]error:[/] {escape(str(err))}", soft_wrap=True)
    sys.exit(err.exit_code)


def _fault(err: Exception) -> UserError | None:
    """The user-facing fault behind an unexpected error, if it is one we know: a full disk
    first, then what the packages registered."""
    return no_space_error(err) or explain_fault(err)
