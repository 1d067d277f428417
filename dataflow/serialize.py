"""Serializers: turn datapoints into bytes and back.

A serializer is an object with ``dumps(obj) -> bytes`` and ``loads(buf)``,
passed to the functions that store or send datapoints as their
``serializer=`` argument; there is no global setting. Two are provided:

* :class:`MsgpackSerializer`, the default and the one to use: compact, fast,
  and safe to load from untrusted files. It also reads the numpy format of
  the ``msgpack-numpy`` package, which is what tensorpack wrote.
* :class:`PickleSerializer`, for Python objects msgpack cannot store. Loading
  pickle runs code chosen by whoever wrote the bytes: use it for trusted
  data only.

The module-level :func:`dumps` and :func:`loads` use a default
:class:`MsgpackSerializer`.

**The msgpack format.** Plain msgpack, with two extension types for numpy:

* extension type 1 holds an array, extension type 2 a numpy scalar (stored
  as a 0-d array). The payload is a header followed by the raw bytes of the
  array in C order. The header is a whole number of 8-byte words: byte 0 is
  the number of words, byte 1 the number of dimensions *n*, then *n*
  little-endian ``uint64`` sizes, then the ``dtype.str`` of the array
  (e.g. ``'<f4'``) in ASCII, padded with NUL bytes.
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from typing import Any

from ._arrays import (
    ext_hook_readonly,
    ext_hook_writable,
    msgpack_dumps,
    object_hook_readonly,
    object_hook_writable,
    pairs_hook,
    unpackb,
    unserializable,
)

__all__ = ["MsgpackSerializer", "PickleSerializer", "Serializer", "dumps", "loads"]


# ---- the serializers -----------------------------------------------------------


class Serializer(ABC):
    """What a ``serializer=`` argument needs: ``dumps`` and ``loads``.

    Subclass it to plug in another codec. ``name`` identifies the codec in
    files that record which serializer wrote them (e.g. LMDB databases).

    Example:
        >>> import json
        >>> class JSONSerializer(Serializer):
        ...     name = "json"
        ...     def dumps(self, obj):
        ...         return json.dumps(obj).encode()
        ...     def loads(self, buf):
        ...         return json.loads(bytes(buf))
        >>> codec = JSONSerializer()
        >>> codec.loads(codec.dumps([1, {"a": 2.5}]))
        [1, {'a': 2.5}]
    """

    #: Identifies the codec in files that record which serializer wrote them.
    name: str = ""

    @abstractmethod
    def dumps(self, obj: Any) -> bytes:
        """The bytes of *obj*; a TypeError names what cannot be serialized and where."""

    @abstractmethod
    def loads(self, buf: Any) -> Any:
        """The object whose bytes are *buf* (any bytes-like object)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MsgpackSerializer(Serializer):
    """msgpack with numpy arrays stored as raw bytes: the fast, safe default.

    Round-trips nested lists, tuples and dicts of ``None``, ``bool``,
    ``int`` (64-bit), ``float``, ``complex``, ``str``, ``bytes``, numpy
    scalars, and numpy arrays of every dtype except ``object`` and
    structured ones (bool, integers, floats including float16, complex,
    datetime, str, bytes), keeping dtype and shape; 0-d, empty and
    non-contiguous arrays included. What comes back differs in a few
    documented ways:

    * tuples come back as lists (as in JSON and in tensorpack), except
      dict keys, which come back as tuples since a list cannot be a key;
    * subclasses come back as their base type (``OrderedDict`` as ``dict``,
      an ``IntEnum`` member as ``int``, an ``ndarray`` subclass as an
      ``ndarray``; masked arrays are refused), a ``bytearray`` or
      ``memoryview`` as ``bytes``, and a Python ``complex`` as
      ``numpy.complex128`` (which is a ``complex``);
    * arrays are C-contiguous, and writable unless *writable* is false.

    ``loads`` also reads the maps msgpack-numpy writes for arrays and
    scalars (``b'nd'``, ``b'type'``, ``b'shape'``, ``b'data'``), which is
    how tensorpack stored them, except object arrays, which msgpack-numpy
    pickles. Loading never runs code from the data.

    Args:
        writable: return arrays that own a writable copy of their data
            (the default). With ``False``, arrays are read-only views into
            the decoded buffer, which saves one copy of each array; modifying
            one in place then raises ``ValueError: assignment destination is
            read-only``.

    Example:
        >>> s = MsgpackSerializer()
        >>> dp = s.loads(s.dumps([np.arange(3, dtype="int16"), ("a", 1.5)]))
        >>> dp[0], dp[0].dtype, dp[1]
        (array([0, 1, 2], dtype=int16), dtype('int16'), ['a', 1.5])

    Note:
        A value it cannot store raises ``TypeError`` naming its type and
        where it sits, e.g. ``... cannot serialize a value of type
        'collections.deque' at component 1, key 'meta': ...``.
    """

    name = "msgpack"

    def __init__(self, *, writable: bool = True) -> None:
        self.writable = bool(writable)
        self._ext_hook = ext_hook_writable if self.writable else ext_hook_readonly
        self._object_hook = object_hook_writable if self.writable else object_hook_readonly

    def dumps(self, obj: Any) -> bytes:
        try:
            return msgpack_dumps(obj)
        except (TypeError, ValueError, OverflowError) as err:
            located = unserializable(type(self).__name__, obj, msgpack_dumps)
            if located is None:
                raise
            raise located from err

    def loads(self, buf: Any) -> Any:
        try:
            return unpackb(
                buf,
                ext_hook=self._ext_hook,
                object_hook=self._object_hook,
                raw=False,
                strict_map_key=False,
            )
        except TypeError:
            # A tuple dict key was stored as a list, which cannot be a key
            # ("unhashable type: 'list'"): decode again, turning such keys
            # back into tuples. Anything else fails again with the same error.
            return unpackb(
                buf,
                ext_hook=self._ext_hook,
                object_pairs_hook=pairs_hook(self._object_hook),
                raw=False,
                strict_map_key=False,
            )

    def __repr__(self) -> str:
        return f"MsgpackSerializer(writable={self.writable})"


def _pickle_dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


class PickleSerializer(Serializer):
    """Python's pickle: stores almost any Python object. Unsafe for untrusted input.

    ``loads`` runs code chosen by whoever wrote the bytes, so load only data
    you produced or trust. Arrays come back writable, tuples as tuples. The
    bytes are readable by the same or a newer Python.

    Example:
        >>> s = PickleSerializer()
        >>> s.loads(s.dumps([np.arange(2), (1, 2)]))
        [array([0, 1]), (1, 2)]
    """

    name = "pickle"

    def dumps(self, obj: Any) -> bytes:
        try:
            return _pickle_dumps(obj)
        except Exception as err:
            located = unserializable("PickleSerializer", obj, _pickle_dumps)
            if located is None:
                raise
            raise located from err

    def loads(self, buf: Any) -> Any:
        return pickle.loads(buf)


_DEFAULT = MsgpackSerializer()


def dumps(obj: Any) -> bytes:
    """Serialize *obj* with the default :class:`MsgpackSerializer`.

    Example:
        >>> loads(dumps({"label": 3, "x": np.zeros((2, 0))}))
        {'label': 3, 'x': array([], shape=(2, 0), dtype=float64)}
    """
    return _DEFAULT.dumps(obj)


def loads(buf: Any) -> Any:
    """Deserialize bytes written by :func:`dumps` (or by msgpack-numpy); arrays are writable."""
    return _DEFAULT.loads(buf)
