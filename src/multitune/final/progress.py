"""The final stage says where it is: one line per finished training, like the searches'.

`fit_all` (`multitune.final.runs`) reports every batch of trainings it starts and every one
that finishes to the stage's `Progress`, when one is active (`active`); each phase of the stage
names itself (`Progress.phase`). A line reads::

    final [cross-fitting] 12/40 done, 2 running, 26 left | 1m05s, about 2m20s left

The estimate is the phase's mean seconds per finished training times the trainings left,
divided by how many run at once (`multitune.progress`: one style for every stage). Lines go
to the console (a terminal or a log alike).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

from multitune.progress import clock, remaining


@dataclass
class Progress:
    """Counts of the current phase's trainings and a printer for the lines."""

    emit: Callable[[str], None]
    name: str = "final"
    label: str = ""
    total: int = 0
    done: int = 0
    running: int = 0
    started_at: float = field(default_factory=time.monotonic)
    phase_at: float = field(default_factory=time.monotonic)

    @contextlib.contextmanager
    def phase(self, label: str) -> Iterator[None]:
        """Count the trainings of `label` apart (the line names the phase)."""
        before = (self.label, self.total, self.done, self.running, self.phase_at)
        self.label, self.total, self.done, self.running = label, 0, 0, 0
        self.phase_at = time.monotonic()
        try:
            yield
        finally:
            self.label, self.total, self.done, self.running, self.phase_at = before

    def queued(self, n: int, at_once: int) -> None:
        """`n` trainings were handed to the backend, `at_once` of them running together."""
        self.total += n
        self.running = min(at_once, self.total - self.done)

    def finished(self, already: bool = False) -> None:
        """One training finished (`already`: read back from a resumed stage)."""
        self.done += 1
        self.running = min(self.running, self.total - self.done)
        if not already:
            self.emit(self.line())

    def line(self) -> str:
        left = self.total - self.done
        eta = remaining(time.monotonic() - self.phase_at, self.done, left, self.running)
        label = f" [{self.label}]" if self.label else ""
        total = clock(time.monotonic() - self.started_at)
        return (
            f"{self.name}{label} {self.done}/{self.total} done, {self.running} running, "
            f"{left} left | {total}{eta}"
        )


_ACTIVE: ContextVar[Progress | None] = ContextVar("multitune_final_progress", default=None)


def active() -> Progress | None:
    """The stage's progress, when one is reporting."""
    return _ACTIVE.get()


@contextlib.contextmanager
def reporting(progress: Progress) -> Iterator[Progress]:
    """Make `progress` the one `fit_all` reports to, for the block."""
    token = _ACTIVE.set(progress)
    try:
        yield progress
    finally:
        _ACTIVE.reset(token)


@contextlib.contextmanager
def phase(label: str) -> Iterator[None]:
    """Name the current phase, when the stage is reporting; nothing otherwise."""
    progress = active()
    if progress is None:
        yield
        return
    with progress.phase(label):
        yield
