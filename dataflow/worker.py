"""Which parallel worker the current code runs in, for sources that shard or seed themselves.

The runners and mappers of :mod:`dataflow.parallel` tell the code they run
where it runs: :func:`get_worker_info` returns a :class:`WorkerInfo` inside a
worker process or thread, and ``None`` elsewhere. A source uses it to read
only its own shard of the data (when the runner asks for exactly-once
epochs) and the random generators of the library use it to give every worker
its own reproducible stream. :func:`shard_order` gives a source that reads
by index the indices of one pass: a contiguous block of them in order, or,
shuffled, this worker's part of a random partition of all of them;
:func:`shard_order_array` gives the same shuffled order as a numpy array,
which takes a few bytes per index instead of a Python int's 36.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from ._rng import partition
from ._rng import shared_seed as _shared_seed  # noqa: F401
from ._worker_state import begin_pass as _begin_pass  # noqa: F401
from ._worker_state import current_state
from ._worker_state import set_process_worker as _set_process_worker  # noqa: F401
from ._worker_state import worker_context as _worker_context  # noqa: F401

# The underscore names imported above were importable from here before the state
# of the worker moved to dataflow/_worker_state.py, and still are (the examples
# below use _worker_context). The library imports them from their homes.

__all__ = ["WorkerInfo", "get_worker_info", "shard_order", "shard_order_array"]

_MAX_INT32 = (1 << 31) - 1


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
        shared_seed: a seed that every worker of the runner has alike
            (derived from the runner's ``seed``, or fresh entropy drawn once
            per runner), for what the workers must agree on: how
            :meth:`shard_indices` partitions the indices. ``None``: no
            shared seed (a :class:`WorkerInfo` made by hand).
        shard_index, num_shards: which shard this worker reads, when that
            is not simply shard *index* of *num_workers* (``None``, the
            default): a runner started by code that itself reads one shard
            of many (one rank of a distributed job, one worker of a
            framework's loader) splits that shard among its workers, and
            worker *i* of *n* under shard *j* of *m* reads shard
            ``j * n + i`` of ``m * n``.

    Example:
        >>> info = WorkerInfo(index=0, num_workers=2, seed=None, sharded=True)
        >>> list(info.shard(5))
        [0, 1]
    """

    index: int
    num_workers: int
    seed: Optional[int] = None
    sharded: bool = False
    shared_seed: Optional[int] = None
    shard_index: Optional[int] = None
    num_shards: Optional[int] = None

    @property
    def part(self) -> Tuple[int, int]:
        """``(shard, number of shards)`` that :meth:`shard` divides by."""
        if self.shard_index is None or self.num_shards is None:
            return self.index, self.num_workers
        return self.shard_index, self.num_shards

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
            index, num_workers = self.part
            return range(index * n // num_workers, (index + 1) * n // num_workers)
        return range(n)

    def shard_indices(
        self, n: int, *, seed: Optional[int] = None, pass_number: int = 0
    ) -> Sequence[int]:
        """This worker's part of a random partition of ``range(n)``, for sources that shuffle.

        When :attr:`sharded`, block :attr:`index` (as in :meth:`shard`) of
        one permutation of ``range(n)`` drawn from *seed* (default
        :attr:`shared_seed`) and *pass_number*: every worker that passes the
        same *seed* and *pass_number* draws the same permutation, so the
        parts hold every index once, and each part is a random sample of
        all the indices, in random order. (A contiguous block of a sorted
        dataset holds only some of its classes: batches made inside one
        worker would see only those.) Without any seed the part is the
        block :meth:`shard` gives. Not sharded: all of ``range(n)``.

        Args:
            n: the number of indices.
            seed: the seed of the partition; ``None`` (default) uses
                :attr:`shared_seed`. All workers must pass the same.
            pass_number: draws another partition for each value; all
                workers must pass the same (default 0).

        Example:
            >>> parts = [WorkerInfo(i, 2, sharded=True, shared_seed=7).shard_indices(6)
            ...          for i in range(2)]
            >>> sorted(parts[0] + parts[1]), [len(p) for p in parts]
            ([0, 1, 2, 3, 4, 5], [3, 3])
        """
        if not self.sharded:
            return range(n)
        return _shard_array(self, n, seed, pass_number).tolist()


def _shard_array(info: WorkerInfo, n: int, seed: Optional[int], pass_number: int) -> np.ndarray:
    """:meth:`WorkerInfo.shard_indices` of a sharded *info*, as an array."""
    block = info.shard(n)
    base = info.shared_seed if seed is None else seed
    if base is None:
        return np.arange(block.start, block.stop)
    return partition(base, pass_number, n)[block.start : block.stop]


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
    state = current_state()
    if state is None:
        return None
    state.asked = True
    return state.info


def shard_range(n: int) -> range:
    """``range(n)``, or this worker's shard of it when the runner asks for shards."""
    info = get_worker_info()
    return range(n) if info is None else info.shard(n)


def shard_order(
    n: int, rng: Optional[np.random.RandomState], *, seed: Optional[int] = None
) -> Sequence[int]:
    """The indices out of ``range(n)`` that one pass of a source reading by index visits here.

    Without *rng* (no shuffling): :func:`shard_range`, a ``range`` in
    increasing order; in a worker of an exactly-once runner, the contiguous
    block :meth:`WorkerInfo.shard`, which suits a reader that reads a file
    sequentially. With *rng*: a new random order drawn from *rng* every
    pass, a list. Outside such workers (and with one worker) that is
    ``rng.permutation(n)``, so a seeded source keeps its sequence of passes.
    In a worker of an exactly-once runner with several workers, it is this
    worker's part of a random partition of ``range(n)``
    (:meth:`WorkerInfo.shard_indices`, from *seed* or the runner's shared
    seed) in an order drawn from *rng*: every part is a random sample of the
    whole dataset, so batches made inside a worker mix all of it, and the
    parts together hold every index once. The partition is drawn anew for
    every pass of the runner, from the seed and the pass number the
    consumer sends to every worker, so a worker's part changes from pass to
    pass as a single process's permutation would.
    :func:`shard_order_array` draws the same order as a numpy array, which
    takes far less memory than the list when *n* is large.

    Args:
        n: the number of items, indexed ``0 .. n-1``.
        rng: the source's generator when it shuffles, else ``None``.
        seed: the source's own seed, if any: it then seeds the partition
            instead of the runner's shared seed. Pass the same in every copy.

    Example:
        >>> shard_order(4, None)
        range(0, 4)
        >>> sorted(shard_order(4, np.random.RandomState(0)))
        [0, 1, 2, 3]
        >>> parts = []
        >>> for i in range(2):
        ...     with _worker_context(WorkerInfo(i, 2, sharded=True, shared_seed=1)):
        ...         parts.append(shard_order(10, np.random.RandomState(i)))
        >>> sorted(parts[0] + parts[1]) == list(range(10))
        True
    """
    if rng is None:
        return shard_range(n)
    order: Sequence[int] = shard_order_array(n, rng, seed=seed).tolist()
    return order


def shard_order_array(
    n: int, rng: np.random.RandomState, *, seed: Optional[int] = None
) -> np.ndarray:
    """:func:`shard_order` with an *rng*, as a numpy array: the same random
    draws and the same order, without a Python ``int`` per index.

    A list of *n* Python ints takes about 36 bytes per index, private to
    every worker process (each builds its own every pass); the array takes 4
    (``int32``; ``int64`` when *n* is ``2**31`` or more), and is drawn in
    place, without a larger temporary array. Use it when a source shuffles
    many indices per pass. Drawing it leaves *rng* in the same state as
    :func:`shard_order` does, so the two can replace each other without
    changing a seeded sequence of passes.

    Args:
        n: the number of items, indexed ``0 .. n-1``.
        rng: the source's generator (without shuffling, the order is
            ``shard_order(n, None)``, a ``range``).
        seed: as for :func:`shard_order`.

    Example:
        >>> shard_order_array(5, np.random.RandomState(0))
        array([2, 0, 1, 3, 4], dtype=int32)
        >>> shard_order(5, np.random.RandomState(0))
        [2, 0, 1, 3, 4]
    """
    if rng is None:
        raise TypeError(
            "shard_order_array() needs the source's random generator, got rng=None; "
            "an order without shuffling is shard_order(n, None), a range"
        )
    dtype = np.int32 if n <= _MAX_INT32 else np.int64
    state = current_state()
    if state is not None:
        state.asked = True
    if state is None or not state.info.sharded or state.info.part[1] == 1:
        order = np.arange(n, dtype=dtype)
    else:
        order = _shard_array(state.info, n, seed, state.pass_number or 0).astype(dtype)
    # rng.permutation(x) is a copy of x (np.arange(x) for an int) that
    # rng.shuffle() shuffles: shuffling in place makes the same draws.
    rng.shuffle(order)
    return order
