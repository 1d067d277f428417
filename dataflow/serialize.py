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
import struct
import threading
from abc import ABC, abstractmethod
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from msgpack import ExtType

# msgpack_numpy.patch(), which importing tensorpack calls, replaces msgpack.Packer
# and msgpack.unpackb with slower wrappers that also write arrays in another
# format. Use msgpack's own implementation, as msgpack/__init__.py picks it.
try:
    from msgpack._cmsgpack import Packer, unpackb
except ImportError:  # pragma: no cover - msgpack without its C extension
    from msgpack.fallback import Packer, unpackb

__all__ = ["MsgpackSerializer", "PickleSerializer", "Serializer", "dumps", "loads"]

_EXT_ARRAY = 1
_EXT_SCALAR = 2
_WORD = 8
# At most this many (dtype, shape) headers are remembered in each direction;
# datasets of variable-shape arrays would otherwise grow the caches forever.
_MAX_CACHED_HEADERS = 1024
# A thread's packer keeps its buffer as large as the largest output so far;
# after an output larger than this it is replaced, to give the memory back.
_MAX_KEPT_PACKER_BYTES = 1 << 22


# ---- the array header (shared by every msgpack encoding of arrays) -----------


def _new_header(dtype: np.dtype, shape: Tuple[int, ...]) -> Tuple[bytes, bool]:
    """The header of an array of *dtype* and *shape*, and whether its dtype
    can export a buffer (datetime dtypes cannot)."""
    if dtype.hasobject:
        raise TypeError(
            "object arrays hold arbitrary Python objects, which msgpack cannot "
            "store; convert it to a numeric, bool, str or bytes dtype, or to a list"
        )
    code = dtype.str
    if np.dtype(code) != dtype:
        raise TypeError(
            f"structured numpy dtypes such as {dtype} are not stored; store each field as an array"
        )
    size = 2 + _WORD * len(shape) + len(code)
    words = -(-size // _WORD)
    header = (
        bytes((words, len(shape)))
        + struct.pack(f"<{len(shape)}Q", *shape)
        + code.encode("ascii").ljust(words * _WORD - size + len(code), b"\0")
    )
    return header, dtype.kind not in "Mm"


def _parse_header(header: bytes) -> Tuple[np.dtype, Tuple[int, ...], int]:
    """The dtype, shape and data size (in bytes) described by *header*."""
    if len(header) < _WORD or len(header) != header[0] * _WORD:
        raise ValueError("corrupt numpy array in msgpack data: truncated header")
    ndim = header[1]
    end = 2 + _WORD * ndim
    if end > len(header):
        raise ValueError(f"corrupt numpy array in msgpack data: header too short for {ndim} dims")
    shape = struct.unpack_from(f"<{ndim}Q", header, 2)
    try:
        dtype = np.dtype(header[end:].rstrip(b"\0").decode("ascii"))
    except (TypeError, ValueError) as err:
        raise ValueError(f"corrupt numpy array in msgpack data: bad dtype ({err})") from None
    if dtype.hasobject:
        raise ValueError("corrupt numpy array in msgpack data: dtype object")
    return dtype, shape, dtype.itemsize * int(np.prod(shape, dtype=object))


_ENCODE_HEADERS: Dict[Tuple[np.dtype, Tuple[int, ...]], Tuple[bytes, bool]] = {}
_DECODE_HEADERS: Dict[bytes, Tuple[np.dtype, Tuple[int, ...], int]] = {}


def _remember(cache: Dict[Any, Any], key: Any, value: Any) -> Any:
    if len(cache) >= _MAX_CACHED_HEADERS:
        cache.clear()
    cache[key] = value
    return value


# Arrays up to this size are copied through tobytes(), which is faster than
# exporting a buffer (array.data) although it copies their bytes twice.
_SMALL_ARRAY_BYTES = 1 << 14


def _array_payload(array: np.ndarray) -> bytes:
    """The extension payload of *array*: header, then its bytes in C order."""
    key = (array.dtype, array.shape)
    entry = _ENCODE_HEADERS.get(key)
    if entry is None:
        entry = _remember(_ENCODE_HEADERS, key, _new_header(*key))
    header, exportable = entry
    if exportable and array.nbytes > _SMALL_ARRAY_BYTES and array.flags.c_contiguous:
        return header + array.data  # one copy instead of two
    return header + array.tobytes()


def _payload_layout(data: bytes) -> Tuple[np.dtype, Tuple[int, ...], int]:
    """The dtype and shape of the array in the payload *data*, and where its bytes start."""
    start = data[0] * _WORD if data else 0
    header = data[:start]
    spec = _DECODE_HEADERS.get(header)
    if spec is None:
        spec = _remember(_DECODE_HEADERS, header, _parse_header(header))
    dtype, shape, nbytes = spec
    if len(data) - start != nbytes:
        raise ValueError(
            f"corrupt numpy array in msgpack data: {len(data) - start} bytes of data, but shape "
            f"{shape} and dtype {dtype} need {nbytes}"
        )
    return dtype, shape, start


# ---- msgpack: encoding ---------------------------------------------------------

# Subclasses of the types msgpack knows (strict_types sends them to the default
# hook, so that numpy's float64/str_/bytes_ keep their type): stored as the base.
_BASE_TYPES: Tuple[Tuple[type, Callable[[Any], Any]], ...] = (
    (tuple, list),
    (list, list),
    (dict, dict),
    (int, int),
    (float, float),
    (str, str.__str__),
    (bytes, bytes),
)


def _plain_array(array: np.ndarray) -> np.ndarray:
    """An instance of an ndarray subclass as a plain array, unless that loses data."""
    if isinstance(array, np.ma.MaskedArray):
        raise TypeError(
            "a masked array would lose its mask; store its .data and .mask, or .filled()"
        )
    return np.asarray(array)


_new_ext = tuple.__new__  # ExtType is a namedtuple


def _msgpack_default(obj: Any) -> Any:
    """Encode what msgpack does not know natively; raise TypeError otherwise."""
    # _new_ext skips the argument checks of ExtType(), which cost more than
    # the rest of this function; the code and payload are valid here.
    if isinstance(obj, np.ndarray):
        if type(obj) is not np.ndarray:
            obj = _plain_array(obj)
        return _new_ext(ExtType, (_EXT_ARRAY, _array_payload(obj)))
    if isinstance(obj, np.generic):
        return _new_ext(ExtType, (_EXT_SCALAR, _array_payload(np.asarray(obj))))
    if isinstance(obj, complex):
        return _new_ext(ExtType, (_EXT_SCALAR, _array_payload(np.asarray(obj, np.complex128))))
    for base, convert in _BASE_TYPES:
        if isinstance(obj, base):
            return convert(obj)
    raise TypeError(
        "msgpack stores None, bool, int, float, complex, str, bytes, lists, tuples, dicts, and "
        "numpy arrays and scalars; convert it, or use PickleSerializer for trusted data"
    )


_PACKERS = threading.local()  # one Packer per thread, reused: creating one costs more


def _msgpack_dumps(obj: Any) -> bytes:
    try:
        packer = _PACKERS.packer
    except AttributeError:
        packer = _PACKERS.packer = Packer(
            default=_msgpack_default, use_bin_type=True, strict_types=True
        )
    out = packer.pack(obj)  # on an error, the packer empties its buffer
    if len(out) > _MAX_KEPT_PACKER_BYTES:
        del _PACKERS.packer
    return out


# ---- msgpack: decoding ---------------------------------------------------------


def _ext_hook_readonly(code: int, data: bytes) -> Any:
    if code in (_EXT_ARRAY, _EXT_SCALAR):
        dtype, shape, start = _payload_layout(data)
        array = np.ndarray(shape, dtype, data, start)  # a view of data
        return array if code == _EXT_ARRAY else array[()]
    return ExtType(code, data)


def _ext_hook_writable(code: int, data: bytes) -> Any:
    if code == _EXT_ARRAY:
        # _payload_layout inlined for a header seen before, with the same checks.
        start = data[0] * _WORD if data else 0
        spec = _DECODE_HEADERS.get(data[:start])
        if spec is None or len(data) - start != spec[2]:
            dtype, shape, start = _payload_layout(data)
        else:
            dtype, shape = spec[0], spec[1]
        return _ndarray(shape, dtype, bytearray(data), start)  # a writable copy
    return _ext_hook_readonly(code, data)


_ndarray = np.ndarray


def _msgpack_numpy_dtype(descr: Any) -> np.dtype:
    """The dtype that msgpack-numpy described as a str or a structured descr list."""
    if isinstance(descr, list):
        return np.dtype(
            [
                (name.decode() if isinstance(name, bytes) else name, _msgpack_numpy_dtype(sub))
                + tuple(tuple(r) if isinstance(r, list) else r for r in rest)
                for name, sub, *rest in descr
            ]
        )
    return np.dtype(descr.decode() if isinstance(descr, bytes) else descr)


def _from_msgpack_numpy(obj: Dict[Any, Any], writable: bool) -> Any:
    """Decode a map written by msgpack-numpy (``b'nd'``, ``b'type'``, ...)."""
    if obj.get(b"kind") == b"O":
        raise ValueError(
            "msgpack-numpy data holds a numpy object array, which msgpack-numpy stores with "
            "pickle; it is not loaded, since unpickling can run arbitrary code"
        )
    try:
        dtype = _msgpack_numpy_dtype(obj[b"type"])
        data = obj[b"data"]
        shape = tuple(obj[b"shape"]) if obj[b"nd"] else ()
        array = np.ndarray(shape, dtype, data)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"corrupt msgpack-numpy array: {err!r}") from None
    if len(data) != array.nbytes:
        raise ValueError(
            f"corrupt msgpack-numpy array: {len(data)} bytes of data for shape {shape} and "
            f"dtype {dtype}"
        )
    if not obj[b"nd"]:
        return array[()]
    return array.copy() if writable else array


# The keys of the maps msgpack-numpy writes: for an array, for a scalar, for a complex.
_MSGPACK_NUMPY_ARRAY = frozenset((b"nd", b"type", b"kind", b"shape", b"data"))
_MSGPACK_NUMPY_SCALAR = frozenset((b"nd", b"type", b"data"))
_MSGPACK_NUMPY_COMPLEX = frozenset((b"complex", b"data"))


def _object_hook_writable(obj: Dict[Any, Any]) -> Any:
    # Only maps with exactly msgpack-numpy's keys: a user's dict that merely has
    # a key b"nd" or b"complex" stays a dict.
    if b"nd" in obj and (obj.keys() == _MSGPACK_NUMPY_ARRAY or obj.keys() == _MSGPACK_NUMPY_SCALAR):
        return _from_msgpack_numpy(obj, True)
    if b"complex" in obj and obj.keys() == _MSGPACK_NUMPY_COMPLEX:
        return complex(obj[b"data"])
    return obj


def _object_hook_readonly(obj: Dict[Any, Any]) -> Any:
    if b"nd" in obj and (obj.keys() == _MSGPACK_NUMPY_ARRAY or obj.keys() == _MSGPACK_NUMPY_SCALAR):
        return _from_msgpack_numpy(obj, False)
    if b"complex" in obj and obj.keys() == _MSGPACK_NUMPY_COMPLEX:
        return complex(obj[b"data"])
    return obj


def _hashable(key: Any) -> Any:
    """A decoded dict key with its lists, which were tuples, back as tuples."""
    return tuple(map(_hashable, key)) if type(key) is list else key


def _pairs_hook(object_hook: Callable[[Dict[Any, Any]], Any]) -> Callable[[List[Any]], Any]:
    """An ``object_pairs_hook`` that builds the dict with :func:`_hashable` keys."""

    def hook(pairs: List[Any]) -> Any:
        return object_hook({_hashable(key): value for key, value in pairs})

    return hook


# ---- finding what cannot be serialized ---------------------------------------


def _locate(obj: Any, encode: Callable[[Any], Any], path: Tuple[Any, ...]) -> Optional[tuple]:
    """``(path, value, error)`` of the first value inside *obj* that *encode*
    fails on, or ``None``. A path step is ``(False, index)`` or ``(True, key)``;
    a failing dict key itself ends the path with ``(True, None)``."""
    if isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            found = _locate(item, encode, (*path, (False, i)))
            if found is not None:
                return found
        return None
    if isinstance(obj, dict):
        for key, value in obj.items():
            found = _locate(key, encode, (*path, (True, None)))
            if found is None:
                found = _locate(value, encode, (*path, (True, key)))
            if found is not None:
                return found
        return None
    try:
        encode(obj)
    except Exception as err:
        return path, obj, err
    return None


def _describe_path(path: Tuple[Any, ...]) -> str:
    if not path:
        return "the top level"
    parts: List[str] = []
    for depth, (is_key, step) in enumerate(path):
        if is_key and step is None:
            parts.append("a dict key")
        elif depth == 0:
            parts.append(f"component {step!r}")
        else:
            parts.append(f"key {step!r}" if is_key else f"index {step}")
    return ", ".join(parts)


def _describe_value(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a numpy array of dtype {value.dtype}"
    kind = type(value)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    return f"a value of type {name!r}"


def _unserializable(owner: str, obj: Any, encode: Callable[[Any], Any]) -> Optional[TypeError]:
    """A TypeError that names what in *obj* *encode* fails on and where it sits,
    or ``None`` if no single value is to blame."""
    found = _locate(obj, encode, ())
    if found is None:
        return None
    path, value, err = found
    return TypeError(
        f"{owner} cannot serialize {_describe_value(value)} at {_describe_path(path)}: {err}"
    )


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
        self._ext_hook = _ext_hook_writable if self.writable else _ext_hook_readonly
        self._object_hook = _object_hook_writable if self.writable else _object_hook_readonly

    def dumps(self, obj: Any) -> bytes:
        try:
            return _msgpack_dumps(obj)
        except (TypeError, ValueError, OverflowError) as err:
            located = _unserializable(type(self).__name__, obj, _msgpack_dumps)
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
                object_pairs_hook=_pairs_hook(self._object_hook),
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
            located = _unserializable("PickleSerializer", obj, _pickle_dumps)
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
