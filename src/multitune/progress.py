"""One style of progress line for the stages that take more than a few seconds.

A line names the stage and what it is at, its counts, the time since the stage started and,
once something is done, an estimate of the time left::

    embed [text, 1 of 2] 4096/15013 rows | 35s, about 1m30s left
    final [cross-fitting] 12/40 done, 2 running, 26 left | 1m05s, about 2m20s left
    sweep 3/8 done, 2 running, 3 pending | best delta_m +0.0123 (a1b2c3d4) | 1m12s

`clock` and `remaining` write the times (the searches' `multitune.tuning.callbacks.Progress`
and the final stage's `multitune.final.progress` use them). `counting` shows a `Count`: on a
terminal a live line, redrawn in place; in a log (DVC, CI) a line every `every_s` seconds at
most, and always the last one. Code deep below the stage reports its work with `advance`,
which counts for the active `Count`, if any (a text encoder, sentence batch by batch).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich loads when a count is shown (`counting`), not with this module:
    # `advance` runs inside a served model's text encoder, which need not load it.
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

EVERY_S = 5.0
"""Seconds between two lines of a log, at least."""


def clock(seconds: float) -> str:
    """`seconds` as a person reads them: `45s`, `3m05s`."""
    seconds = max(0, round(seconds))
    minutes, s = divmod(seconds, 60)
    return f"{minutes}m{s:02d}s" if minutes else f"{s}s"


def remaining(elapsed: float, done: int, left: int, at_once: int = 1) -> str:
    """`, about 2m20s left`: the mean time per finished unit times the units left, divided
    by how many run at once; "" before the first unit is done and after the last."""
    if not done or left <= 0:
        return ""
    return f", about {clock(elapsed / done * left / max(1, at_once))} left"


@dataclass
class Count:
    """`done` of `total` units (rows, say) of one phase of a stage.

    The estimate of the time left reads the pace since the first units were done, so a slow
    start (loading a model) does not inflate it.

    Attributes:
        name: The stage (`embed`).
        label: The phase (`text, 1 of 2`).
        total: The units of the phase.
        unit: What is counted, plural.
        started_at: When the stage started (`time.monotonic`): the line's elapsed time.
    """

    name: str
    label: str
    total: int
    unit: str = "rows"
    started_at: float = field(default_factory=time.monotonic)
    done: int = 0
    _first: tuple[float, int] | None = field(default=None, init=False, repr=False)

    def reach(self, done: int) -> None:
        """At least `done` units are done."""
        done = min(self.total, done)
        if done <= self.done:
            return
        if self._first is None:
            self._first = (time.monotonic(), done)
        self.done = done

    def line(self) -> str:
        """The phase's line (see the module docstring)."""
        now = time.monotonic()
        left = ""
        if self._first is not None:
            at, first = self._first
            left = remaining(now - at, self.done - first, self.total - self.done)
        label = f" [{self.label}]" if self.label else ""
        return (
            f"{self.name}{label} {self.done}/{self.total} {self.unit} | "
            f"{clock(now - self.started_at)}{left}"
        )


class _Ticker:
    """Prints a changing line: live on a terminal, at most every `every_s` seconds in a log,
    and the last one when closed."""

    def __init__(self, count: Count, out: Console, every_s: float) -> None:
        self.count, self.out, self.every_s = count, out, every_s
        self.last_at = time.monotonic()  # a log's first line after `every_s`
        self.printed = ""
        self.live: Live | None = None
        if out.is_terminal:
            from rich.live import Live  # with a count shown (see the imports above)

            self.live = Live(self, console=out, refresh_per_second=4, transient=False)
            self.live.start()

    def __rich__(self) -> Text:  # a live line renders afresh: its clock runs
        from rich.text import Text  # loaded already, by the live display

        return Text(self.count.line())

    def tick(self) -> None:
        now = time.monotonic()
        if self.live is None and now - self.last_at >= self.every_s:
            self._print()
            self.last_at = now

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()  # the last render stays on screen
        elif self.count.line() != self.printed:
            self._print()

    def _print(self) -> None:
        self.printed = self.count.line()
        self.out.print(self.printed, markup=False, highlight=False, soft_wrap=True)


_ACTIVE: ContextVar[_Ticker | None] = ContextVar("multitune_progress", default=None)


@contextlib.contextmanager
def counting(
    count: Count, every_s: float = EVERY_S, out: Console | None = None
) -> Iterator[Count]:
    """Show `count` while the block runs (on `out`, default the stage's console); `advance`
    and `reach` move it."""
    from multitune.console import console  # with a count shown (see the imports above)

    ticker = _Ticker(count, out or console, every_s)
    token = _ACTIVE.set(ticker)
    try:
        yield count
    finally:
        _ACTIVE.reset(token)
        ticker.close()


def advance(n: int) -> None:
    """`n` more units of the active count are done (nothing when none is active)."""
    ticker = _ACTIVE.get()
    if ticker is not None:
        reach(ticker.count.done + n)


def reach(done: int) -> None:
    """At least `done` units of the active count are done (some reported by `advance`)."""
    ticker = _ACTIVE.get()
    if ticker is not None and done > ticker.count.done:
        ticker.count.reach(done)
        ticker.tick()
