"""Atomic writes: an output exists whole or not at all.

A disk that fills up while an output is written is a `NoSpaceError` naming the output (one
line, no traceback); the half-written temporary copy is removed and any previous output is
left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from multitune.errors import NoSpaceError, error_chain

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# torch.save reports a full disk as a RuntimeError without an errno; such an error counts as
# one when the filesystem has less than this left once it is raised.
_NEARLY_FULL = 1 << 20


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success.

    Works for files and directories. On error the temporary path is removed and any existing
    `target` is left untouched.

    Raises:
        NoSpaceError: the disk filled up (names `target`, the outermost one when nested).
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent)) / target.name
    except OSError as err:
        _raise_if_full(err, target)
        raise
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            # Moved aside (one rename), not deleted first: the old output is gone only once
            # the new one is in place; the finally below removes it.
            os.replace(target, tmp.parent / f"{target.name}.old")
        os.replace(tmp, target)
    except Exception as err:
        _raise_if_full(err, target)
        raise
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def no_space_error(
    err: BaseException, target: str | os.PathLike[str] | None = None
) -> NoSpaceError | None:
    """`err` as a `NoSpaceError` naming `target`, or None when it is not a full disk or quota.

    Without a `target`: the file that a full disk (`OSError` ENOSPC or EDQUOT, anywhere in
    `err`'s chain) could not write.
    """
    if target is not None:
        if any(isinstance(at, NoSpaceError) or _full(at) for at in error_chain(err)):
            return NoSpaceError(os.fsdecode(target))
        if isinstance(err, RuntimeError) and _free(target) < _NEARLY_FULL:
            return NoSpaceError(os.fsdecode(target))
        return None
    for at in error_chain(err):
        if isinstance(at, NoSpaceError):
            return at
        if isinstance(at, OSError) and _full(at):
            # A copy's error names the source, then the destination (the file written).
            where = at.filename2 if at.filename2 is not None else at.filename
            return NoSpaceError(os.fsdecode(where) if where is not None else "a file")
    return None


def _full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in NO_SPACE


def _raise_if_full(err: BaseException, target: Path) -> None:
    full = no_space_error(err, target)
    if full is not None:
        raise full from err


def _free(path: str | os.PathLike[str]) -> int:
    """Bytes free on the filesystem holding `path` (or its nearest existing parent); a
    large number when that cannot be read."""
    here = Path(path)
    for candidate in (here, *here.parents):
        with contextlib.suppress(OSError):
            return shutil.disk_usage(candidate).free
    return 1 << 62


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
