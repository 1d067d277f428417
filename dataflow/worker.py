"""Which parallel worker the current code runs in, for sources that shard or seed themselves.

The runners and mappers of :mod:`dataflow.parallel` tell the code they run
where it runs: :func:`get_worker_info` returns a :class:`WorkerInfo` inside a
worker process or thread, and ``None`` elsewhere. A source uses it to read
only its own shard of the data (when the runner asks for exactly-once
epochs) and the random generators of the library use it to give every worker
its own reproducible stream.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np

__all__ = ["WorkerInfo", "get_worker_info"]


@dataclass(frozen=True)
class WorkerInfo:
    """Where the current code runs: worker *index* of *num_workers*.

    Attributes:
        index: this worker's index, ``0 <= index < num_workers``.
        num_workers: how many workers run copies of the same dataflow.
        seed: this worker's seed, derived from the runner's ``seed`` with
            ``numpy.random.SeedSequence`` (different for every worker), or
            ``None`` when the runner has no seed (fresh entropy).
        sharded: the runner asks each worker to read only its own shard, so
            that one pass over all workers yields every datapoint once.
            Sources that can shard do so only when this is true.

    Example:
        >>> info = WorkerInfo(index=0, num_workers=2, seed=None, sharded=True)
        >>> list(info.shard(5))
        [0, 1]
    """

    index: int
    num_workers: int
    seed: Optional[int] = None
    sharded: bool = False

    def shard(self, n: int) -> range:
        """The indices out of ``range(n)`` that this worker reads.

        When :attr:`sharded`, one contiguous block:
        ``range(index * n // num_workers, (index + 1) * n // num_workers)``.
        The blocks of the ``num_workers`` workers follow each other, so
        together they hold every index once, and their sizes differ by at
        most one. A contiguous block lets a reader of a file read one region
        of it rather than every page or chunk. Not sharded: all of ``range(n)``.

        Example:
            >>> WorkerInfo(1, 3, sharded=True).shard(8)
            range(2, 5)
            >>> [list(WorkerInfo(i, 3, sharded=True).shard(8)) for i in range(3)]
            [[0, 1], [2, 3, 4], [5, 6, 7]]
            >>> WorkerInfo(1, 3).shard(8)
            range(0, 8)
        """
        if self.sharded:
            index, num_workers = self.index, self.num_workers
            return range(index * n // num_workers, (index + 1) * n // num_workers)
        return range(n)


class _State:
    """The worker of a process or thread, and how many seeds it has handed out."""

    def __init__(self, info: WorkerInfo) -> None:
        self.info = info
        self.counter = itertools.count()


_PROCESS_STATE: Optional[_State] = None
_THREAD_STATE = threading.local()


def _current_state() -> Optional[_State]:
    state = getattr(_THREAD_STATE, "state", None)
    return state if state is not None else _PROCESS_STATE


def get_worker_info() -> Optional[WorkerInfo]:
    """The :class:`WorkerInfo` of the worker this code runs in, or ``None`` outside workers.

    Call it in ``reset_state()`` or ``__iter__`` of a source (never in
    ``__init__``, which runs in the main process).

    Example:
        >>> class Shardable(DataFlow):
        ...     def __init__(self, items):
        ...         self.items = items
        ...     def __iter__(self):
        ...         info = get_worker_info()
        ...         indices = info.shard(len(self.items)) if info else range(len(self.items))
        ...         for i in indices:
        ...             yield [self.items[i]]
        >>> get_worker_info() is None
        True
    """
    state = _current_state()
    return state.info if state is not None else None


def shard_range(n: int) -> range:
    """``range(n)``, or this worker's shard of it when the runner asks for shards."""
    info = get_worker_info()
    return range(n) if info is None else info.shard(n)


def _set_process_worker(info: Optional[WorkerInfo]) -> None:
    """Declare that this process is a worker (called first thing in a worker process)."""
    global _PROCESS_STATE
    _PROCESS_STATE = None if info is None else _State(info)


@contextlib.contextmanager
def _worker_context(info: WorkerInfo) -> Iterator[None]:
    """Within the block, this thread counts as worker *info* (restored after)."""
    previous = getattr(_THREAD_STATE, "state", None)
    _THREAD_STATE.state = _State(info)
    try:
        yield
    finally:
        _THREAD_STATE.state = previous


def _seed_state(seed: Optional[int]) -> np.ndarray:
    """The 128-bit state that seeds a random generator with *seed* here.

    Outside workers: the stream of *seed* (``None``: fresh OS entropy).
    In worker *i*: an explicit *seed* gives a stream of its own for each
    worker (so copies of a seeded source do not repeat each other; worker 0
    keeps the stream it has outside workers); without
    one, the worker's seed gives each generator the worker resets its own
    stream, in the order they are reset; with neither, fresh entropy.
    """
    state = _current_state()
    if state is None:
        return np.random.SeedSequence(seed).generate_state(4)
    info = state.info
    if seed is not None:  # worker 0 keeps the stream it has outside workers
        key = (info.index,) if info.index else ()
        return np.random.SeedSequence(seed, spawn_key=key).generate_state(4)
    if info.seed is None:
        return np.random.SeedSequence().generate_state(4)
    return np.random.SeedSequence(info.seed, spawn_key=(next(state.counter),)).generate_state(4)
