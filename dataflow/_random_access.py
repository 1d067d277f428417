"""RandomAccessDataFlow: the base of sources that read datapoint *i* directly.

A subclass says how many datapoints there are and how to read one; the base
class gives it the rest of a source: a pass in order or shuffled anew,
sharding inside the workers of an exactly-once runner, an exact ``len()``,
and ``state_dict()`` / ``load_state_dict()`` that resume by seeking. The
storage formats and the dataset readers of the library are built on it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence as _SequenceABC
from typing import Any, Dict, Iterator, Optional, Sequence, Union

import numpy as np

from ._checks import check_bool as _check_bool
from ._checks import is_int as _is_int
from ._state import rng_from_state, rng_state
from .base import Datapoint, RNGDataFlow
from .worker import shard_order_array, shard_range

__all__ = ["RandomAccessDataFlow"]

# Indices converted to Python ints at a time while a pass iterates its order.
_CHUNK = 4096


class IndexOrder(_SequenceABC):
    """The indices of a shuffled pass: a read-only sequence of Python ints over
    a numpy array, which takes 4 bytes per index where a list takes 36.

    Iterating it converts a few thousand indices at a time; indexing with an
    int gives an ``int``, with a slice another :class:`IndexOrder` (a view);
    ``numpy.asarray()`` gives the array itself, for a :meth:`read` that
    gathers rows at once.
    """

    __slots__ = ("_array",)

    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    def __len__(self) -> int:
        return len(self._array)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return IndexOrder(self._array[index])
        return int(self._array[index])

    def __iter__(self) -> Iterator[int]:
        array = self._array
        chunks = (array[k : k + _CHUNK].tolist() for k in range(0, len(array), _CHUNK))
        return itertools.chain.from_iterable(chunks)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if dtype is not None and np.dtype(dtype) != self._array.dtype:
            return self._array.astype(dtype)
        return self._array.copy() if copy else self._array

    def __repr__(self) -> str:
        return f"IndexOrder({self._array!r})"


class _Pass:
    """The pass in progress: the random state its order was drawn from, how
    many datapoints it yielded, and whether it ended."""

    __slots__ = ("count", "done", "rng")

    def __init__(self, rng: Any, count: int) -> None:
        self.rng, self.count, self.done = rng, count, False


class RandomAccessDataFlow(RNGDataFlow):
    """Yield ``self.get(i)`` for every index *i*, in order or in a new random order every pass.

    The base class of sources that can read any datapoint by its index (a
    file of records, arrays, a list of files). Subclass it and define
    :meth:`num_datapoints` and :meth:`get`; set ``self.shuffle`` and
    ``self.seed`` in ``__init__`` (calling ``super().__init__(shuffle,
    seed=seed)`` does). Open files in ``reset_state()`` (call
    ``super().reset_state()``, which creates ``self.rng``) and close them in
    ``close()``. What you get:

    * a pass visits ``range(num_datapoints())`` in order, or with *shuffle*
      in a new random order drawn from ``self.rng`` every pass (with a
      *seed*, the same sequence of orders in every run);
    * ``len()`` is exact;
    * inside a runner with ``exactly_once=True``, each worker visits only
      its shard (see :func:`dataflow.worker.shard_order`), and ``len()``
      counts it;
    * ``state_dict()`` / ``load_state_dict()``: the state is the position in
      the pass (and, shuffled, the random state the pass's order was drawn
      from), and a resumed pass starts reading at that position: loading
      and reaching the next datapoint takes the same time wherever the
      position is.

    ``get(i)`` must return the same datapoint for the same *i* every time
    (draw random augmentation in a wrapper, not in ``get``), so that a
    resumed pass reads what the interrupted one would have read. To read
    faster than one index at a time, override :meth:`read`.

    Args:
        shuffle: visit the datapoints in a new random order every pass
            (default); ``False`` keeps index order.
        seed: seeds ``self.rng`` at every ``reset_state()``; ``None`` (the
            default) draws fresh entropy, so every process shuffles differently.

    Example:
        >>> class Squares(RandomAccessDataFlow):
        ...     def __init__(self, n, shuffle=True, *, seed=None):
        ...         super().__init__(shuffle, seed=seed)
        ...         self.n = n
        ...     def num_datapoints(self):
        ...         return self.n
        ...     def get(self, index):
        ...         return [index * index]
        >>> df = Squares(4, shuffle=False)
        >>> df.reset_state()
        >>> list(df), len(df)
        ([[0], [1], [4], [9]], 4)
        >>> from dataflow.testing import check_resume
        >>> check_resume(lambda: Squares(6, seed=0))
    """

    #: Visit the datapoints in a new random order every pass.
    shuffle: bool = False
    _live: Optional[_Pass] = None  # the pass in progress
    _pending: Optional[Dict[str, Any]] = None  # a loaded mid-pass state, for the next pass

    def __init__(self, shuffle: bool = True, *, seed: Optional[int] = None) -> None:
        self.shuffle = _check_bool("shuffle", shuffle)
        self.set_seed(seed)

    def num_datapoints(self) -> int:
        """How many datapoints there are: the indices are ``0 .. num_datapoints() - 1``.

        Define it in a subclass. It may need ``reset_state()`` first, and must
        not change between passes.
        """
        raise NotImplementedError(f"{type(self).__name__} must define num_datapoints()")

    def get(self, index: int) -> Datapoint:
        """The datapoint at *index*, a list or dict; define it in a subclass.

        It must return the same datapoint for the same index every time.
        """
        raise NotImplementedError(f"{type(self).__name__} must define get(index)")

    def read(self, indices: Sequence[int]) -> Iterator[Datapoint]:
        """The datapoints at *indices*, in that order: ``get(i)`` for each *i*.

        One pass calls it once, with the indices still to visit: a ``range``
        when they are consecutive (not shuffled), else a read-only sequence
        of ``int`` over a numpy array (``numpy.asarray(indices)`` gives the
        array; a list of millions of ints would take 36 bytes an index in
        every worker). Override it to read faster, e.g. a block of
        consecutive records at once; it must yield one datapoint per index,
        lazily.
        """
        return map(self.get, indices)

    def __len__(self) -> int:
        return len(shard_range(self.num_datapoints()))

    def __iter__(self) -> Iterator[Datapoint]:
        pending, self._pending = self._pending, None
        n = self.num_datapoints()
        pass_rng = None
        order: Union[range, IndexOrder]
        if self.shuffle:
            pass_rng = self.rng.get_state()
            order = IndexOrder(shard_order_array(n, self.rng))
        else:
            order = shard_range(n)
        start = 0 if pending is None else min(pending["pos"], len(order))
        self._resumed = pending
        record = self._live = _Pass(pass_rng, start)
        return _counting(self.read(order[start:] if start else order), record)

    def own_state_dict(self) -> Dict[str, Any]:
        """``{"rng": ..., "pos": k}``: *k* datapoints of the current pass were
        yielded, in the order that the random state *rng* (from before the
        pass) draws again; ``pos`` is ``None`` between passes, and *rng*
        then the current random state. *rng* is ``None`` without shuffling."""
        if self._pending is not None:
            return dict(self._pending)
        live = self._live
        if live is None or live.done:
            return {"rng": rng_state(self._rng) if self.shuffle else None, "pos": None}
        return {"rng": rng_state(live.rng), "pos": live.count}

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        pos = state.get("pos") if isinstance(state, dict) else None
        valid = pos is None or _is_int(pos) and 0 <= pos <= len(self)
        if not isinstance(state, dict) or not valid:
            raise ValueError(
                f"load_state_dict() of {type(self).__name__}: the position must be None or an "
                f"int from 0 to len() = {len(self)}, got {state!r}"
            )
        self._live = None
        if self.shuffle:
            rng_from_state(self.rng, state["rng"])
        self._pending = None if pos is None else dict(state)

    #: The state a pass started from, when it resumed a loaded one (for :meth:`read`).
    _resumed: Optional[Dict[str, Any]] = None


def _counting(it: Iterator[Datapoint], record: _Pass) -> Iterator[Datapoint]:
    for dp in it:
        record.count += 1
        yield dp
    record.done = True
