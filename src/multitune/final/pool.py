"""The local process pool of the final stage's trainings (`multitune.final.runs.fit_all`).

Workers are spawned (not forked: the driver holds threads), receive the training data once
each through `init_worker`, and stay from one `fit_all` to the next on the same data.
"""

from __future__ import annotations

import atexit
import multiprocessing
import weakref
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch

from multitune.training import TrainingData

_DATA: TrainingData | None = None


def init_worker(data: TrainingData, threads: int) -> None:
    """A worker's start: the data every job of the pool reads, and its threads."""
    global _DATA
    _DATA = data
    torch.set_num_threads(threads)


def worker_data() -> TrainingData | None:
    """The data `init_worker` gave this worker (None in the driver)."""
    return _DATA


@dataclass
class _Pool:
    """The pool, and what it was started for."""

    executor: ProcessPoolExecutor
    data: weakref.ref[TrainingData]
    workers: int
    threads: int


_POOL: _Pool | None = None


def local_pool(data: TrainingData, workers: int, threads: int) -> ProcessPoolExecutor:
    """The local process pool, kept from one `fit_all` to the next on the same data: the
    stage's later phases (and a library caller's later calls) do not spawn their workers,
    and import torch in them, again. Another data object, worker count or thread count
    replaces it; it closes at exit (`close_pool`)."""
    global _POOL
    if _POOL is not None and (
        _POOL.data() is not data or (_POOL.workers, _POOL.threads) != (workers, threads)
    ):
        close_pool()
    if _POOL is None:
        executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),  # the driver holds threads
            initializer=init_worker,
            initargs=(data.to("cpu"), threads),
        )
        _POOL = _Pool(executor, weakref.ref(data), workers, threads)
    return _POOL.executor


def close_pool() -> None:
    """Shut the local process pool down (queued runs are cancelled)."""
    global _POOL
    if _POOL is not None:
        pool, _POOL = _POOL, None
        pool.executor.shutdown(cancel_futures=True)


atexit.register(close_pool)
