"""Sources: dataflows that produce datapoints from Python objects."""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Iterator as _IteratorABC
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._checks import check_bool as _check_bool
from ._checks import check_int as _check_int
from ._compact import COMPACT_MIN_ITEMS, CompactList, pack_before_fork, packed
from ._fake import fake_domains, fake_dtypes, fake_sampler, fake_shape
from ._random_access import RandomAccessDataFlow
from ._state import (
    EndMarker,
    PassRecord,
    load_replay_state,
    replay_state,
    replaying,
    rng_from_state,
    rng_state,
    skip_items,
)
from .base import (
    DataFlow,
    DataFlowReentrantGuard,
    Datapoint,
    RNGDataFlow,
    UnknownLengthError,
    init_args,
)
from .worker import get_worker_info, shard_order, shard_order_array, shard_range

__all__ = ["DataFromGenerator", "DataFromIterable", "DataFromList", "DataFromQueue", "FakeData"]
__all__ += ["RandomAccessDataFlow"]  # defined in _random_access.py


class _IterateOnce:
    """Hands out a single-use iterator once; asking again is a clear error."""

    def __init__(self, iterator: Iterator[Any], owner: str, advice: str) -> None:
        self._iterator: Optional[Iterator[Any]] = iterator
        self._kind = type(iterator).__name__
        self._message = (
            f"{owner} was given a {type(iterator).__name__} object, which can be "
            f"iterated only once, and a second pass was started; {advice}"
        )

    def __call__(self) -> Iterator[Any]:
        iterator, self._iterator = self._iterator, None
        if iterator is None:
            raise RuntimeError(self._message)
        return iterator

    def __repr__(self) -> str:
        return f"<{self._kind}>"


def _is_iterable(value: Any) -> bool:
    return hasattr(value, "__iter__") or hasattr(value, "__getitem__")


def _pass_maker(iterable: Iterable[Any], owner: str, advice: str) -> Callable[[], Iterator[Any]]:
    """A function giving ``iter(iterable)`` for each pass; for a single-use iterator, a
    clear error from the second pass on."""
    if isinstance(iterable, _IteratorABC):
        return _IterateOnce(iterable, owner, advice)
    return functools.partial(iter, iterable)


# With compact=None, lists at least this long are kept in a compact store.
_COMPACT_MIN_ITEMS = COMPACT_MIN_ITEMS


class DataFromList(RNGDataFlow):
    """Yield the datapoints of a list, in order or shuffled anew every pass.

    ``len()`` is exactly ``len(lst)``. With *shuffle*, every pass is a new
    permutation drawn from ``self.rng``; with a *seed*, the sequence of
    permutations is the same in every run. Inside a runner with
    ``exactly_once=True``, each worker reads only its shard and ``len()``
    counts it: unshuffled, a contiguous block of *lst*
    (:meth:`~dataflow.WorkerInfo.shard`); shuffled, its part of a random
    partition of the whole list, in a new order every pass (see
    :func:`~dataflow.worker.shard_order`), so that batches made inside a
    worker mix the whole list even when it is sorted by class.

    Memory: forked workers that iterate a Python list each end up with a copy
    of it (reading an object writes its reference count, and the kernel copies
    the page). So a long list is packed into a compact store, one ``bytes``
    buffer of encoded datapoints and an array of offsets, whose pages the
    workers share, and each datapoint is decoded as a pass yields it. By
    default (*compact* ``None``), a list of at least 100,000 datapoints is
    packed when the process first forks after construction (a runner, or a
    framework's loader, starting its worker processes), or when the source is
    pickled (to send it to spawned workers); a pipeline that never forks
    iterates the list itself, at full speed. Once packed, the source
    holds no reference to *lst* (drop it and its memory is freed), later
    changes to *lst* are not seen, and each datapoint yielded is a new copy,
    equal to the one in *lst* and of the same types, except that arrays come
    back as writable C-contiguous copies and a ``bytearray`` or ``memoryview``
    as ``bytes``. Datapoints that msgpack cannot store exactly are pickled; if
    one cannot be pickled either, the source keeps the list. Unpacked, it
    holds *lst* itself and yields its datapoints, not copies: a wrapper must
    not change them in place (the built-in ones do not), and changes to *lst*
    show in the passes that start after them. Both ways yield the same
    datapoints in the same order, draw the same random numbers and save the
    same state. See ``docs/memory.md``.

    Args:
        lst: a list or tuple of datapoints, each a list or a dict.
        shuffle: shuffle at every pass (default) or keep the order of *lst*.
        seed: seeds ``self.rng`` at every ``reset_state()``; ``None`` (the
            default) draws fresh entropy, so every process shuffles differently.
        compact: ``True`` packs the list at once, ``False`` never (keeps *lst*
            itself); ``None`` (the default) packs a list of at least 100,000
            datapoints before the process forks, unless its datapoints share large
            objects (which the store would copy into each).

    Example:
        >>> df = DataFromList([[1, "a"], [2, "b"], [3, "c"]], shuffle=False)
        >>> df.reset_state()
        >>> list(df)
        [[1, 'a'], [2, 'b'], [3, 'c']]
        >>> df = DataFromList([[i] for i in range(5)], seed=0, compact=True)
        >>> df.reset_state()
        >>> sorted(dp[0] for dp in df), type(df.lst).__name__
        ([0, 1, 2, 3, 4], 'CompactList')
    """

    def __init__(
        self,
        lst: Sequence[Datapoint],
        shuffle: bool = True,
        *,
        seed: Optional[int] = None,
        compact: Optional[bool] = None,
    ) -> None:
        if not isinstance(lst, (list, tuple)):
            raise TypeError(f"lst must be a list or tuple of datapoints, got {type(lst).__name__}")
        if compact is not None and not isinstance(compact, bool):
            raise TypeError(f"compact must be None, True or False, got {compact!r}")
        # Checking the set of types is much faster than an isinstance per element.
        if not all(issubclass(t, (list, dict)) for t in set(map(type, lst))):
            k = next(k for k, dp in enumerate(lst) if not isinstance(dp, (list, dict)))
            hint = "; convert with [list(dp) for dp in lst]" if isinstance(lst[k], tuple) else ""
            raise TypeError(
                f"lst[{k}] must be a list or dict datapoint, got {type(lst[k]).__name__}{hint}"
            )
        self.shuffle = _check_bool("shuffle", shuffle)
        self.set_seed(seed)
        self.lst = packed(lst, check_shared=False) if compact else lst
        self._pack_pending = compact is None and len(lst) >= _COMPACT_MIN_ITEMS
        if self._pack_pending:
            pack_before_fork(self)

    def _pack_for_fork(self) -> None:
        """Swap the list for a compact store, if it qualifies, before workers
        fork or this source is pickled for them (once)."""
        if self.__dict__.pop("_pack_pending", False):
            self.lst = packed(self.lst, check_shared=True)

    def __getstate__(self) -> Dict[str, Any]:
        self._pack_for_fork()  # workers started by spawn get the store too
        return dict(self.__dict__)

    def _repr_args(self) -> Dict[str, Any]:
        # Not *compact*: it changes where the datapoints live, not which, so a
        # saved state loads whichever way the list is kept.
        args = init_args(self)
        args.pop("lst", None)
        return {"n": len(self.lst), **args}

    def __len__(self) -> int:
        return len(shard_range(len(self.lst)))

    # The current pass: (RNG state before its order was drawn, its length, the
    # iterator whose remaining length gives the position, its end marker).
    _live: Optional[Tuple[Any, int, Iterator[Any], EndMarker]] = None
    _pending: Optional[Dict[str, Any]] = None  # a loaded mid-pass state

    def __iter__(self) -> Iterator[Datapoint]:
        lst = self.lst
        if isinstance(lst, CompactList):
            return self._iter_compact(lst)
        pending, self._pending = self._pending, None
        pass_rng = None
        if self.shuffle:
            pass_rng = self.rng.get_state()
            indices: Sequence[int] = shard_order(len(lst), self.rng, seed=self.seed)
        else:
            indices = shard_range(len(lst))
        whole = not self.shuffle and len(indices) == len(lst)
        inner: Iterator[Any] = iter(lst) if whole else iter(indices)
        if pending is not None:
            skip_items(inner, pending["pos"])
        marker = EndMarker()
        self._live = (pass_rng, len(indices), inner, marker)
        return itertools.chain(inner if whole else map(lst.__getitem__, inner), marker)

    def _iter_compact(self, store: CompactList) -> Iterator[Datapoint]:
        """A pass over the store: the same order as over a list, drawn into a
        numpy array instead of a list of ints (which every worker would hold)."""
        pending, self._pending = self._pending, None
        self._live = None  # let the last pass's order go before drawing the next
        pass_rng = None
        if self.shuffle:
            pass_rng = self.rng.get_state()
            order: Any = shard_order_array(len(store), self.rng, seed=self.seed)  # int32
        else:
            order = shard_range(len(store))
        reader = store.read(order, 0 if pending is None else pending["pos"])
        marker = EndMarker()
        self._live = (pass_rng, len(order), reader, marker)
        return itertools.chain(reader, marker)

    def own_state_dict(self) -> Dict[str, Any]:
        """``{"rng": ..., "pos": k}``: *k* datapoints of the pass were yielded, whose
        order *rng* (the random state before the pass) draws again; ``pos`` is
        ``None`` between passes, and *rng* then the current random state."""
        if self._pending is not None:
            return self._pending
        live = self._live
        if live is None or live[3].done:
            return {"rng": rng_state(self._rng) if self.shuffle else None, "pos": None}
        pass_rng, n, inner, _ = live
        return {"rng": rng_state(pass_rng), "pos": n - operator.length_hint(inner)}

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        self._live = None
        if self.shuffle:
            rng_from_state(self.rng, state["rng"])
        self._pending = None if state["pos"] is None else state


class DataFromGenerator(DataFlow):
    """Yield the datapoints of a generator, or of a function that makes one per pass.

    Pass a function that returns a new generator (or any iterable) and every
    pass calls it, so the dataflow can be iterated many times. Pass a
    generator object and the dataflow is single-use: a second pass raises a
    ``RuntimeError`` instead of silently yielding nothing. ``len()`` is
    *size* when given (it is trusted, not checked), and unknown otherwise.
    Holds nothing besides *gen*.

    Args:
        gen: a function returning an iterable of datapoints (re-iterable); a
            generator or other iterator (single pass only); or, as in
            tensorpack, any other iterable (iterated anew every pass).
        size: the number of datapoints one pass yields, if known; ``None``
            (the default) means unknown.

    Example:
        >>> def squares():
        ...     for i in range(3):
        ...         yield [i * i]
        >>> df = DataFromGenerator(squares, size=3)
        >>> df.reset_state()
        >>> list(df), list(df), len(df)
        ([[0], [1], [4]], [[0], [1], [4]], 3)

    Note:
        ``DataFromGenerator(squares())`` (with the call) works for one pass
        only; wrappers that iterate more than once, such as ``RepeatedData``,
        then fail at the second pass. Pass ``squares`` itself.
    """

    def __init__(
        self,
        gen: Union[Callable[[], Iterable[Datapoint]], Iterator[Datapoint]],
        size: Optional[int] = None,
    ) -> None:
        if callable(gen):
            self._make_iterable: Callable[[], Iterable[Datapoint]] = gen
        elif _is_iterable(gen):
            self._make_iterable = _pass_maker(
                gen,
                "DataFromGenerator",
                "to iterate more than once, pass a function that returns a new generator, "
                "e.g. DataFromGenerator(my_generator) instead of DataFromGenerator(my_generator())",
            )
        else:
            raise TypeError(
                f"gen must be a generator or a function returning an iterable, got {gen!r}"
            )
        if size is not None:
            size = _check_int("size", size, 0, "None or a non-negative int")
        self._size = size

    def _repr_args(self) -> Dict[str, Any]:
        return init_args(self, gen=self._make_iterable, size=self._size)

    def __len__(self) -> int:
        if self._size is None:
            raise UnknownLengthError(
                "DataFromGenerator does not know how many datapoints one pass yields; "
                "pass size= if you know it"
            )
        return self._size

    def __iter__(self) -> Iterator[Datapoint]:
        return replaying(self, self._one_pass)

    def own_state_dict(self) -> Dict[str, Any]:
        """How many datapoints the current pass yielded: a resumed pass calls
        *gen* again and skips that many, so resuming costs as much as
        producing them again."""
        return replay_state(self)

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        load_replay_state(self, state)

    def _one_pass(self) -> Iterator[Datapoint]:
        iterable = self._make_iterable()
        try:
            return iter(iterable)
        except TypeError:
            raise TypeError(
                f"DataFromGenerator: gen() must return an iterable of datapoints, "
                f"got {type(iterable).__name__}"
            ) from None


class DataFromIterable(DataFlow):
    """Yield the elements of an iterable, each a datapoint, calling ``iter()`` anew every pass.

    A collection (a list, a ``range``-like object, a dataset class with
    ``__iter__``) can be iterated many times. An iterator or generator can be
    iterated once: a second pass raises a ``RuntimeError`` instead of silently
    yielding nothing. ``len()`` is ``len(iterable)`` when the iterable has a
    length, unknown otherwise. Inside a runner with ``exactly_once=True``,
    worker *i* yields its block of elements, ``WorkerInfo.shard(len(iterable))``,
    and ``len()`` counts it; an iterable without a length has no such block,
    so there worker *i* yields every *num_workers*-th element from element *i*.
    A worker iterates the iterable from its first element to the end of its
    shard (to the end, without a length). Holds only a reference to *iterable*,
    which it iterates anew every pass, so that changes to it show: a long list
    iterated by forked workers is copied into each of them (see
    ``docs/memory.md``); ``DataFromList(lst, shuffle=False)`` yields the same
    and keeps memory flat.

    Args:
        iterable: any iterable of datapoints (lists or dicts).

    Example:
        >>> from collections import deque
        >>> df = DataFromIterable(deque([[1, "a"], [2, "b"]]))
        >>> df.reset_state()
        >>> list(df), list(df), len(df)
        ([[1, 'a'], [2, 'b']], [[1, 'a'], [2, 'b']], 2)
        >>> df = DataFromIterable([i, -i] for i in range(3))  # a generator: one pass only
        >>> list(df)
        [[0, 0], [1, -1], [2, -2]]
    """

    def __init__(self, iterable: Iterable[Datapoint]) -> None:
        if not _is_iterable(iterable):
            raise TypeError(f"iterable must be an iterable, got {iterable!r}")
        self._itr = iterable
        self._make_iterator = _pass_maker(
            iterable,
            "DataFromIterable",
            "pass a collection that can be iterated again (e.g. a list), or use "
            "DataFromGenerator with a function that returns a new iterator every pass",
        )

    def _repr_args(self) -> Dict[str, Any]:
        return init_args(self, iterable=self._itr)

    def __len__(self) -> int:
        try:
            n = len(self._itr)  # type: ignore[arg-type]
        except TypeError:
            raise UnknownLengthError(
                f"DataFromIterable: the iterable (a {type(self._itr).__name__}) has no len()"
            ) from None
        return len(shard_range(n))

    _record: Optional[PassRecord] = None
    _pending: Optional[int] = None  # datapoints of the pass to skip, from a loaded state

    def __iter__(self) -> Iterator[Datapoint]:
        info = get_worker_info()
        done, self._pending, itr = self._pending or 0, None, self._itr
        seekable = isinstance(itr, (list, tuple, range))
        if info is None or not info.sharded:
            if done and seekable:
                it: Iterator[Any] = itertools.islice(iter(itr), done, None)  # seeks
            else:
                it = self._make_iterator()
                skip_items(it, done)
        else:
            try:
                n = len(itr)  # type: ignore[arg-type]
            except TypeError:  # no length, so no contiguous block: every num_workers-th element
                index, count = info.part
                it = itertools.islice(self._make_iterator(), index, None, count)
                skip_items(it, done)
            else:
                shard, source = info.shard(n), iter(itr) if seekable else self._make_iterator()
                it = itertools.islice(source, shard.start + done, shard.stop)
        record = self._record = PassRecord([], None)
        record.count = done
        return _counted(it, record)

    def own_state_dict(self) -> Dict[str, Any]:
        """``{"pos": k}``: *k* datapoints of the current pass were yielded (``None``
        between passes). A list, tuple or range resumes by seeking to *k*; any
        other iterable is iterated again and its first *k* elements skipped."""
        if self._pending is not None:
            return {"pos": self._pending}
        record = self._record
        return {"pos": None if record is None or record.done else record.count}

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        self._record = None
        self._pending = state["pos"]


def _counted(it: Iterator[Any], record: PassRecord) -> Iterator[Any]:
    for dp in it:
        record.count += 1
        yield dp
    record.done = True


class DataFromQueue(DataFlow):
    """Yield ``queue.get()`` forever: the datapoints another thread or process puts in a queue.

    The length is unknown and a pass never ends; each ``queue.get()`` blocks
    until a datapoint arrives, for as long as it takes. Iterating from two
    places at once raises :class:`~dataflow.ReentrancyError` (the two loops
    would steal each other's datapoints). Holds only a reference to *queue*.

    Args:
        queue: an object with a ``get()`` method, such as ``queue.Queue`` or
            ``multiprocessing.Queue``; whatever ``get()`` returns is a datapoint.

    Example:
        >>> import itertools, queue
        >>> q = queue.Queue()
        >>> for i in range(3):
        ...     q.put([i])
        >>> df = DataFromQueue(q)
        >>> df.reset_state()
        >>> list(itertools.islice(df, 3))
        [[0], [1], [2]]

    Note:
        Nothing here ends the pass: stop with ``break``, ``itertools.islice``
        or a wrapper such as ``FixedSizeData``, and make sure the producer
        keeps putting datapoints, or ``get()`` waits forever.
    """

    def __init__(self, queue: Any) -> None:
        if not callable(getattr(queue, "get", None)):
            raise TypeError(f"queue must be an object with a get() method, got {queue!r}")
        self.queue = queue
        self._guard = DataFlowReentrantGuard("DataFromQueue")

    def __iter__(self) -> Iterator[Datapoint]:
        with self._guard:
            get = self.queue.get
            while True:
                yield get()


class FakeData(RNGDataFlow):
    """Yield random arrays of the given shapes and dtypes, for tests and benchmarks.

    Each datapoint is a list with one numpy array per entry of *shapes*.
    ``len()`` is exactly *size*. Arrays are drawn from ``self.rng``: with a
    *seed* they are the same in every run, without one they differ between
    processes. With ``random=False`` one datapoint is drawn at
    ``reset_state()`` and every datapoint of every pass is a new list holding
    those same arrays, so the data costs nothing to make.

    Args:
        shapes: one shape (a list or tuple of non-negative ints) per component.
        size: the number of datapoints in a pass, >= 0; default 1000.
        random: draw new arrays for every datapoint (default), or repeat one.
        dtype: a numpy dtype (name, type or ``np.dtype``) for all components,
            or a list with one per component; default ``'float32'``.
        domain: ``(low, high)`` for all components, or a list with one pair
            per component. Floats are uniform in ``[low, high)``; integers are
            uniform integers in ``[low, high)``; bools ignore it and are
            ``True`` or ``False`` with equal odds. Default ``(0, 1)``.
        seed: seeds ``self.rng`` at every ``reset_state()``; ``None`` (the
            default) draws fresh entropy.

    Example:
        >>> df = FakeData([[2, 3], [1]], size=4, dtype=["float32", "int64"],
        ...               domain=[(0, 1), (0, 10)], seed=0)
        >>> df.reset_state()
        >>> image, label = next(iter(df))
        >>> image.shape, image.dtype, label.shape, label.dtype, len(df)
        ((2, 3), dtype('float32'), (1,), dtype('int64'), 4)

    Note:
        With ``random=False`` all datapoints share the same arrays: changing
        one in place changes every datapoint.
    """

    def __init__(
        self,
        shapes: Sequence[Sequence[int]],
        size: int = 1000,
        random: bool = True,
        dtype: Any = "float32",
        domain: Any = (0, 1),
        *,
        seed: Optional[int] = None,
    ) -> None:
        message = f"shapes must be a non-empty list of shapes (one per component), got {shapes!r}"
        if not isinstance(shapes, (list, tuple)):
            raise TypeError(message)
        if not shapes:
            raise ValueError(message)
        self.shapes = [fake_shape(k, shape) for k, shape in enumerate(shapes)]
        self._size = _check_int("size", size, 0, "a non-negative int")
        self.random = _check_bool("random", random)
        self.dtype = fake_dtypes(dtype, len(self.shapes))
        self.domain = fake_domains(domain, self.dtype)
        self._fixed: Optional[List[np.ndarray]] = None
        self.set_seed(seed)

    def _repr_args(self) -> Dict[str, Any]:
        # one dtype and one domain when every component has the same
        dtypes = [d.name for d in self.dtype]
        dtype = dtypes[0] if len(set(dtypes)) == 1 else dtypes
        domain = self.domain[0] if len(set(self.domain)) == 1 else self.domain
        return init_args(self, dtype=dtype, domain=domain)

    _live: Optional[Tuple[int, Iterator[int], EndMarker]] = None
    _pending: Optional[int] = None  # datapoints of the pass to skip, from a loaded state
    _fixed_rng: Any = None  # the random state the fixed datapoint was drawn from

    def reset_state(self) -> None:
        super().reset_state()
        self._live = self._pending = None
        if not self.random:
            self._fixed_rng = self.rng.get_state()
            self._fixed = [draw() for draw in self._samplers()]

    def _samplers(self) -> List[Callable[[], np.ndarray]]:
        rng = self.rng
        return [fake_sampler(rng, *spec) for spec in zip(self.shapes, self.dtype, self.domain)]

    def __len__(self) -> int:
        return len(shard_range(self._size))

    def __iter__(self) -> Iterator[Datapoint]:
        samplers = self._samplers()  # raises the clear error if not reset yet
        n = len(self)
        positions = iter(range(n))
        skip_items(positions, self._pending or 0)
        self._pending = None
        marker = EndMarker()
        self._live = (n, positions, marker)
        if self._fixed is not None:
            fixed = self._fixed
            return itertools.chain((fixed[:] for _ in positions), marker)
        return itertools.chain(([draw() for draw in samplers] for _ in positions), marker)

    def own_state_dict(self) -> Dict[str, Any]:
        """``{"rng": ..., "pos": k, "fixed": ...}``: the current random state (the
        next arrays), *k* datapoints of the pass yielded (``None`` between
        passes) and, with ``random=False``, the random state of the fixed datapoint."""
        pos = self._pending
        live = self._live
        if pos is None and live is not None and not live[2].done:
            pos = live[0] - operator.length_hint(live[1])
        return {"rng": rng_state(self._rng), "pos": pos, "fixed": rng_state(self._fixed_rng)}

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        if state["fixed"] is not None:
            rng_from_state(self.rng, state["fixed"])
            self._fixed_rng = self.rng.get_state()
            self._fixed = [draw() for draw in self._samplers()]
        rng_from_state(self.rng, state["rng"])
        self._live = None
        self._pending = state["pos"]
