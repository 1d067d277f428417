"""Feed JAX: a DataFlow as ``jax.Array`` pytrees, placed on the devices ahead of time."""

from __future__ import annotations

import weakref
from typing import Any, Callable, Iterator, Optional, Tuple

import numpy as np

from .._checks import check_int
from .._optional import import_optional
from ..base import DataFlow
from ._prefetch import Prefetcher
from ._share import Share
from ._tree import is_numeric_array, map_leaves

__all__ = ["JaxIterator", "to_jax"]


def to_jax(df: DataFlow, *, sharding: Any = None, prefetch: int = 2) -> JaxIterator:
    """Iterate *df* as pytrees of ``jax.Array`` (the datapoint's lists, tuples
    and dicts, with every numpy array a ``jax.Array``).

    A background thread reads the pipeline and places each datapoint on the
    devices *prefetch* datapoints before it is asked for, so the transfer
    overlaps the training step. Without *sharding*, each array goes to the
    default device (``jax.device_put``). With a ``jax.sharding.Sharding``,
    each array is this process's part of a global array laid out by it
    (``jax.make_array_from_process_local_data``): on one host that is the
    whole batch split over the local devices; on several hosts
    (``jax.process_count() > 1``) every process reads its own share of the
    pipeline, as the ranks of :func:`to_torch` do, with the same number of
    datapoints per pass, and the global batch is the hosts' parts together.

    Strings and other arrays JAX has no type for are left as numpy arrays.
    A pipeline that starts worker processes starts them here, before this
    function asks JAX anything on one host: call it before JAX starts (before
    the first array), since forking a process in which JAX runs is unsafe,
    or give the pipeline's runners ``start_method="forkserver"``.
    It resets *df* (do not call ``reset_state()`` first). Each ``iter()``
    of it starts a pass; :meth:`JaxIterator.close` (or leaving a ``with``
    block, or the end of the pass) stops the thread.

    Args:
        df: the pipeline; not reset yet.
        sharding: a ``jax.sharding.Sharding`` for every array, or ``None``.
        prefetch: how many datapoints to keep placed ahead.

    Example:
        >>> import jax
        >>> df = BatchData(DataFromList([[float(i)] for i in range(6)], shuffle=False), 3)
        >>> with to_jax(df) as batches:
        ...     [type(b[0]).__name__ for b in batches] == ["ArrayImpl"] * 2
        True
    """
    jax = import_optional("jax", "dataflow.to_jax")
    if not isinstance(df, DataFlow):
        raise TypeError(f"to_jax: df must be a DataFlow, got {type(df).__name__}")
    prefetch = check_int("prefetch", prefetch, 1, "a positive int")
    if sharding is not None and not isinstance(sharding, jax.sharding.Sharding):
        raise TypeError(
            f"to_jax: sharding must be a jax.sharding.Sharding, got {type(sharding).__name__}"
        )
    if sharding is None:

        def place(x: np.ndarray) -> Any:
            return jax.device_put(x)
    else:

        def place(x: np.ndarray) -> Any:
            return jax.make_array_from_process_local_data(sharding, x)

    share = Share(*_process(jax), None, "to_jax")
    return JaxIterator(df, share, place, prefetch)


def _process(jax: Any) -> Tuple[int, int]:
    """This process's index and the number of processes of the job. Asking JAX
    starts its backends (and threads), and a pipeline with worker processes must
    fork before that: on one host, whose job was never initialized as
    distributed, the answer is known without asking."""
    initialized = getattr(jax.distributed, "is_initialized", None)
    if initialized is not None and not initialized():
        return 0, 1
    return jax.process_index(), jax.process_count()


class JaxIterator:
    """What :func:`to_jax` returns: passes of the pipeline, placed ahead.

    Every ``iter()`` starts a pass (a ``for`` loop per epoch works, as over
    a list); ``next()`` before any ``iter()`` starts the first.

    Example:
        >>> with to_jax(DataFromList([[np.zeros(2)]], shuffle=False)) as it:
        ...     [[dp[0].shape for dp in it] for epoch in range(2)]
        [[(2,)], [(2,)]]
    """

    def __init__(
        self, df: DataFlow, share: Share, place: Callable[[np.ndarray], Any], prefetch: int
    ) -> None:
        self.df, self._share, self._place, self._prefetch = df, share, place, prefetch
        self._reader = share.reader(df, 0, 1, in_worker_process=False)
        self._reader.reset()
        self._passes = 0
        self._current: Optional[Prefetcher] = None

    def _start(self) -> Prefetcher:
        self.close()
        reader, place = self._reader, self._place
        number = self._passes if self._share.world_size > 1 else None
        self._passes += 1

        def produce() -> Iterator[Any]:
            for dp in reader.iterate(number):
                yield _placed(dp, place)

        self._current = Prefetcher(produce, self._prefetch, "dataflow.to_jax")
        # An iterator dropped without close() stops its thread when it is collected.
        weakref.finalize(self, self._current.close)
        return self._current

    def __iter__(self) -> JaxIterator:
        self._start()
        return self

    def __next__(self) -> Any:
        current = self._current if self._current is not None else self._start()
        return next(current)

    def close(self) -> None:
        """Stop reading ahead (idempotent); the next ``iter()`` starts a new pass."""
        if self._current is not None:
            self._current.close()

    def __enter__(self) -> JaxIterator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JaxIterator({self.df!r})"


def _placed(dp: Any, place: Callable[[np.ndarray], Any]) -> Any:
    return map_leaves(dp, lambda x: place(np.asarray(x)) if is_numeric_array(x) else x)
