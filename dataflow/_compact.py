"""A compact store of many small Python objects that forked workers share untouched.

A Python list of a million small datapoints is a million objects, each with
a reference count in its header. A forked worker that iterates the list
writes every one of those counts, so the kernel copies every page that
holds one: copy-on-write becomes a full private copy of the list in every
worker. :class:`CompactList` holds the same datapoints as bytes instead:
each one encoded into one contiguous ``bytes`` buffer, with a numpy array of
where each one starts. Neither has a reference count per datapoint, so the
workers read the pages without writing them, and the kernel keeps one copy.
Reading datapoint *i* decodes it anew.

The encoding is msgpack with strict types, so that every datapoint comes
back equal and of the same types: ``None``, ``bool``, ``int`` (64-bit),
``float``, ``str``, ``bytes``, lists, dicts, tuples (an extension type),
numpy arrays and scalars (the codec of :mod:`dataflow.serialize`). A
datapoint holding anything else (a subclass, an ``OrderedDict``, a big
``int``, a custom object) is pickled instead, and a datapoint that pickle
cannot store either means there is no store (:func:`compact` returns
``None``), and the source keeps its list.
"""

from __future__ import annotations

import functools
import itertools
import logging
import operator
import os
import pickle
import sys
import weakref
from collections.abc import Sequence as _SequenceABC
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np
from msgpack import ExtType

from ._arrays import Packer, ext_hook_writable, msgpack_default, unpackb

# msgpack_numpy.patch(), which importing tensorpack calls, replaces msgpack.Unpacker
# with a slower wrapper: use msgpack's own (see dataflow._arrays).
try:
    from msgpack._cmsgpack import Unpacker
except ImportError:  # pragma: no cover - msgpack without its C extension
    from msgpack.fallback import Unpacker

__all__ = [
    "COMPACT_MIN_ITEMS",
    "CompactList",
    "compact",
    "pack_before_fork",
    "packed",
    "shares_objects",
]

_log = logging.getLogger(__name__)

#: Lists at least this long are packed before a fork by the sources that
#: pack automatically (shorter ones cost little to copy, and read faster as lists).
COMPACT_MIN_ITEMS = 100_000

_EXT_TUPLE = 3  # codes 1 and 2 are the arrays and scalars of dataflow._arrays
_EXT_PICKLED = 4
# Tuples inside tuples deeper than this are pickled (each level needs a packer).
_MAX_TUPLE_DEPTH = 32
# Datapoints decoded per step of a pass: their offsets are looked up and their
# bytes gathered at once (at least one datapoint, at most about _CHUNK_BYTES).
_CHUNK = 1024
_CHUNK_BYTES = 1 << 20
# Buffers up to this size use 32-bit offsets.
_MAX_UINT32 = (1 << 32) - 1


class _Encoder:
    """msgpack with exact types: what it cannot store exactly raises ``TypeError``."""

    def __init__(self) -> None:
        self._packers: List[Any] = []
        self._depth = 0

    def _default(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is tuple:
            if self._depth >= _MAX_TUPLE_DEPTH:
                raise TypeError("tuples nested too deep")
            return ExtType(_EXT_TUPLE, self.pack(list(obj)))
        if kind is np.ndarray or (isinstance(obj, np.generic) and kind.__module__ == "numpy"):
            return msgpack_default(obj)  # a TypeError for object and structured dtypes
        raise TypeError(f"{kind.__qualname__} is pickled")

    def pack(self, obj: Any) -> bytes:
        depth = self._depth
        if depth == len(self._packers):
            self._packers.append(
                Packer(default=self._default, use_bin_type=True, strict_types=True)
            )
        self._depth = depth + 1
        try:
            out: bytes = self._packers[depth].pack(obj)
        finally:
            self._depth = depth
        return out

    def encode(self, obj: Any) -> Optional[bytes]:
        """The bytes of *obj*, pickled if msgpack cannot store it exactly;
        ``None`` if pickle cannot store it either."""
        try:
            return self.pack(obj)
        except Exception:
            self._depth = 0
        try:
            pickled = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
            return self.pack(ExtType(_EXT_PICKLED, pickled))
        except Exception:  # e.g. a lambda inside, or over 4 GiB (msgpack's limit)
            self._depth = 0
            return None


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _EXT_TUPLE:
        return tuple(_decode(data))
    if code == _EXT_PICKLED:
        return pickle.loads(data)
    return ext_hook_writable(code, data)


_decode = functools.partial(unpackb, ext_hook=_ext_hook, raw=False, strict_map_key=False)


class CompactList(_SequenceABC):
    """A read-only sequence of datapoints stored as bytes; item *i* is decoded when read.

    Build one with :func:`compact`. ``len()``, indexing (ints and slices),
    iteration and pickling work as for a tuple; each read returns a new
    copy, equal to the datapoint that was stored and of the same types
    (numpy arrays come back as writable C-contiguous copies). Holds one
    ``bytes`` buffer and one numpy array of offsets, and no Python object
    per datapoint.

    Example:
        >>> store = compact([[1, "a"], {"x": (2.5, None)}])
        >>> len(store), store[1], store[-2]
        (2, {'x': (2.5, None)}, [1, 'a'])
    """

    __slots__ = ("_data", "_offsets")

    def __init__(self, data: bytes, offsets: np.ndarray) -> None:
        self._data = data
        self._offsets = offsets

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return list(self.read(range(len(self))[index]))
        i = operator.index(index)
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"CompactList index out of range: {index} for {n} items")
        return _decode(self._data[int(self._offsets[i]) : int(self._offsets[i + 1])])

    def __iter__(self) -> Iterator[Any]:
        return iter(self.read(range(len(self))))

    def __reduce__(self) -> Any:
        return (CompactList, (self._data, self._offsets))

    def __repr__(self) -> str:
        return f"<CompactList of {len(self)} items in {self.nbytes:,} bytes>"

    @property
    def nbytes(self) -> int:
        """The bytes the store holds: the encoded datapoints and their offsets."""
        return len(self._data) + self._offsets.nbytes

    def read(self, order: Union[range, np.ndarray], start: int = 0) -> Reader:
        """The datapoints at ``order[start:]``, in that order, decoded one at a time."""
        return Reader(self, order, start)


class Reader:
    """Iterates the datapoints of a :class:`CompactList` at some indices; its
    ``__length_hint__`` is how many are left, which gives the position of a pass.

    The bytes of up to :data:`_CHUNK` datapoints (at most about
    :data:`_CHUNK_BYTES`, and at least one datapoint) are gathered at once
    into a msgpack ``Unpacker``, which decodes them one by one in C.
    """

    __slots__ = ("_chain", "_current", "_next", "_order", "_store")

    def __init__(self, store: CompactList, order: Union[range, np.ndarray], start: int) -> None:
        self._store, self._order = store, order
        self._next = min(max(start, 0), len(order))
        self._current: Iterator[bool] = iter(())
        self._chain = itertools.chain.from_iterable(self._chunks())

    def _chunks(self) -> Iterator[Iterator[Any]]:
        order, offsets, data = self._order, self._store._offsets, self._store._data
        contiguous = isinstance(order, range) and order.step == 1
        while self._next < len(order):
            k = self._next
            stop = min(k + _CHUNK, len(order))
            if contiguous:
                bounds = offsets[order[k] : order[k] + (stop - k) + 1].astype(np.int64)
                starts, ends = bounds[:-1], bounds[1:]
            else:
                indices = np.asarray(order[k:stop], dtype=np.int64)
                starts = offsets[indices].astype(np.int64)
                ends = offsets[indices + 1].astype(np.int64)
            count = int(np.searchsorted(np.cumsum(ends - starts), _CHUNK_BYTES, "right"))
            count = min(max(count, 1), stop - k)
            if contiguous:
                chunk = data[int(starts[0]) : int(ends[count - 1])]
            else:
                slices = map(slice, starts[:count].tolist(), ends[:count].tolist())
                chunk = b"".join(map(data.__getitem__, slices))
            unpacker = _unpacker(len(chunk))
            unpacker.feed(chunk)
            del chunk
            self._current = iter([True] * count)
            self._next = k + count
            # compress() takes a datapoint, then a True: the Trues left count the
            # datapoints of the chunk not yet yielded.
            yield itertools.compress(unpacker, self._current)

    def __iter__(self) -> Iterator[Any]:
        return self._chain

    def __next__(self) -> Any:
        return next(self._chain)

    def __length_hint__(self) -> int:
        return len(self._order) - self._next + operator.length_hint(self._current)


def _unpacker(size: int) -> Any:
    return Unpacker(
        None,
        ext_hook=_ext_hook,
        raw=False,
        strict_map_key=False,
        max_buffer_size=max(size, 1),
    )


def compact(items: Iterable[Any]) -> Optional[CompactList]:
    """*items* encoded into a :class:`CompactList`, or ``None`` if one of them
    cannot be stored (neither msgpack nor pickle can encode it).

    Example:
        >>> compact([[1], [2]])[1]
        [2]
        >>> compact([[lambda: 0]]) is None
        True
    """
    encoder = _Encoder()
    encode = encoder.encode
    buffer = bytearray()
    ends = [0]
    append, extend = ends.append, buffer.extend
    for item in items:
        out = encode(item)
        if out is None:
            return None
        extend(out)
        append(len(buffer))
    dtype = np.uint32 if len(buffer) <= _MAX_UINT32 else np.int64
    offsets = np.array(ends, dtype=dtype)
    del ends
    return CompactList(bytes(buffer), offsets)


def _deep_size(obj: Any, seen: set) -> int:
    """The bytes of *obj* and what it holds, counting each object once in *seen*."""
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, (list, tuple)):
        size += sum(_deep_size(x, seen) for x in obj)
    elif isinstance(obj, dict):
        size += sum(_deep_size(k, seen) + _deep_size(v, seen) for k, v in obj.items())
    return size


def shares_objects(items: Sequence[Any], sample: int = 64) -> bool:
    """Whether the datapoints of *items* seem to share large objects, which a
    store would copy into every datapoint that holds them.

    Encodes up to *sample* datapoints spread over *items* and compares their
    size with the memory they take as objects, each object counted once:
    encoded, they should not be larger than twice that.
    """
    n = len(items)
    if n == 0:
        return False
    picks = [items[k * n // min(n, sample)] for k in range(min(n, sample))]
    encoder = _Encoder()
    encoded = 0
    for item in picks:
        out = encoder.encode(item)
        if out is None:
            return True
        encoded += len(out)
    return encoded > 2 * _deep_size(picks, set()) + 4096


def packed(
    items: Sequence[Any], *, check_shared: bool, owner: str = "DataFromList"
) -> Sequence[Any]:
    """*items* in a :class:`CompactList`, or *items* itself if one cannot be
    stored (or, with *check_shared*, if they seem to share large objects);
    *owner* names the holder of *items* in the log."""
    if check_shared and shares_objects(items):
        _log.info("%s: the items share large objects; keeping the list", owner)
        return items
    store = compact(items)
    if store is None:
        _log.info("%s: an item cannot be encoded or pickled; keeping the list", owner)
        return items
    return store


# Objects whose _pack_for_fork() runs before the next fork of this process.
_BEFORE_FORK: weakref.WeakSet[Any] = weakref.WeakSet()


def pack_before_fork(owner: Any) -> None:
    """Call ``owner._pack_for_fork()`` just before this process next forks
    (``os.fork()``, as a runner or a framework's loader starts its workers),
    unless *owner* is gone by then. Only a weak reference is kept."""
    _BEFORE_FORK.add(owner)


def _run_before_fork() -> None:
    while _BEFORE_FORK:
        owner = _BEFORE_FORK.pop()
        try:
            owner._pack_for_fork()
        except Exception:  # never fail a fork: the owner keeps what it had
            _log.exception("packing %s before fork failed", type(owner).__name__)


if hasattr(os, "register_at_fork"):  # not on Windows, which cannot fork
    os.register_at_fork(before=_run_before_fork)
