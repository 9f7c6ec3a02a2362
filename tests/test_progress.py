"""The stages' progress line in a log (DVC, CI): a line every few seconds at most, and the
last one always, with the time left once something is done."""

from __future__ import annotations

import io
import re

from rich.console import Console

from multitune.progress import Count, advance, clock, counting, reach


def _log() -> Console:
    return Console(file=io.StringIO(), force_terminal=False, width=200)


def _lines(out: Console) -> list[str]:
    file = out.file
    assert isinstance(file, io.StringIO)
    return file.getvalue().splitlines()


def test_a_log_gets_no_line_before_every_s_and_always_the_last_one() -> None:
    out = _log()
    with counting(Count("embed", "text, 1 of 2", 1000), every_s=3600, out=out):
        for _ in range(10):
            advance(100)
    assert _lines(out) == ["embed [text, 1 of 2] 1000/1000 rows | 0s"]


def test_each_line_says_what_is_done_and_about_how_long_is_left() -> None:
    out = _log()
    with counting(Count("embed", "text, 1 of 1", 300), every_s=0, out=out):
        advance(100)  # the pace is read from here on
        advance(100)
        reach(150)  # already passed: no new line
        reach(300)
    first, second, last = _lines(out)
    assert first == "embed [text, 1 of 1] 100/300 rows | 0s"
    assert re.fullmatch(r"embed \[text, 1 of 1\] 200/300 rows \| 0s, about \d+s left", second)
    assert last == "embed [text, 1 of 1] 300/300 rows | 0s"


def test_work_counted_outside_a_stage_prints_nothing() -> None:
    advance(10)
    reach(20)


def test_times_read_as_minutes_and_seconds() -> None:
    assert [clock(s) for s in (0, 45.4, 65, 3600)] == ["0s", "45s", "1m05s", "60m00s"]
