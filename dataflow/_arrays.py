"""The numpy <-> msgpack array codec, shared by the serializers and the transport.

One concept in one place: the header that describes an array (dtype and
shape, see :mod:`dataflow.serialize` for the layout), the caches of
headers in each direction, the msgpack extension hooks that turn headers
and bytes back into arrays (read-only views or writable copies), the reader
of the ``msgpack-numpy`` format tensorpack wrote, and the error that names
the component of a datapoint msgpack cannot store.

:mod:`dataflow.serialize` builds its :class:`~dataflow.serialize.MsgpackSerializer`
on it, and :mod:`dataflow._transport.wire` its messages (which send large
arrays as frames of their own, beside the header).
"""

from __future__ import annotations

import struct
import threading
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

__all__ = [
    "DECODE_HEADERS",
    "ENCODE_HEADERS",
    "Packer",
    "ext_hook_readonly",
    "ext_hook_writable",
    "msgpack_default",
    "msgpack_dumps",
    "new_header",
    "object_hook_readonly",
    "object_hook_writable",
    "pairs_hook",
    "parse_header",
    "plain_array",
    "remember",
    "unpackb",
    "unserializable",
]

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


def new_header(dtype: np.dtype, shape: Tuple[int, ...]) -> Tuple[bytes, bool]:
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


def parse_header(header: bytes) -> Tuple[np.dtype, Tuple[int, ...], int]:
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


ENCODE_HEADERS: Dict[Tuple[np.dtype, Tuple[int, ...]], Tuple[bytes, bool]] = {}
DECODE_HEADERS: Dict[bytes, Tuple[np.dtype, Tuple[int, ...], int]] = {}


def remember(cache: Dict[Any, Any], key: Any, value: Any) -> Any:
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
    entry = ENCODE_HEADERS.get(key)
    if entry is None:
        entry = remember(ENCODE_HEADERS, key, new_header(*key))
    header, exportable = entry
    if exportable and array.nbytes > _SMALL_ARRAY_BYTES and array.flags.c_contiguous:
        return header + array.data  # one copy instead of two
    return header + array.tobytes()


def _payload_layout(data: bytes) -> Tuple[np.dtype, Tuple[int, ...], int]:
    """The dtype and shape of the array in the payload *data*, and where its bytes start."""
    start = data[0] * _WORD if data else 0
    header = data[:start]
    spec = DECODE_HEADERS.get(header)
    if spec is None:
        spec = remember(DECODE_HEADERS, header, parse_header(header))
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


def plain_array(array: np.ndarray) -> np.ndarray:
    """An instance of an ndarray subclass as a plain array, unless that loses data."""
    if isinstance(array, np.ma.MaskedArray):
        raise TypeError(
            "a masked array would lose its mask; store its .data and .mask, or .filled()"
        )
    return np.asarray(array)


_new_ext = tuple.__new__  # ExtType is a namedtuple


def msgpack_default(obj: Any) -> Any:
    """Encode what msgpack does not know natively; raise TypeError otherwise."""
    # _new_ext skips the argument checks of ExtType(), which cost more than
    # the rest of this function; the code and payload are valid here.
    if isinstance(obj, np.ndarray):
        if type(obj) is not np.ndarray:
            obj = plain_array(obj)
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


def msgpack_dumps(obj: Any) -> bytes:
    try:
        packer = _PACKERS.packer
    except AttributeError:
        packer = _PACKERS.packer = Packer(
            default=msgpack_default, use_bin_type=True, strict_types=True
        )
    out = packer.pack(obj)  # on an error, the packer empties its buffer
    if len(out) > _MAX_KEPT_PACKER_BYTES:
        del _PACKERS.packer
    return out


# ---- msgpack: decoding ---------------------------------------------------------


def ext_hook_readonly(code: int, data: bytes) -> Any:
    if code in (_EXT_ARRAY, _EXT_SCALAR):
        dtype, shape, start = _payload_layout(data)
        array = np.ndarray(shape, dtype, data, start)  # a view of data
        return array if code == _EXT_ARRAY else array[()]
    return ExtType(code, data)


def ext_hook_writable(code: int, data: bytes) -> Any:
    if code == _EXT_ARRAY:
        # _payload_layout inlined for a header seen before, with the same checks.
        start = data[0] * _WORD if data else 0
        spec = DECODE_HEADERS.get(data[:start])
        if spec is None or len(data) - start != spec[2]:
            dtype, shape, start = _payload_layout(data)
        else:
            dtype, shape = spec[0], spec[1]
        return _ndarray(shape, dtype, bytearray(data), start)  # a writable copy
    return ext_hook_readonly(code, data)


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


def object_hook_writable(obj: Dict[Any, Any]) -> Any:
    # Only maps with exactly msgpack-numpy's keys: a user's dict that merely has
    # a key b"nd" or b"complex" stays a dict.
    if b"nd" in obj and (obj.keys() == _MSGPACK_NUMPY_ARRAY or obj.keys() == _MSGPACK_NUMPY_SCALAR):
        return _from_msgpack_numpy(obj, True)
    if b"complex" in obj and obj.keys() == _MSGPACK_NUMPY_COMPLEX:
        return complex(obj[b"data"])
    return obj


def object_hook_readonly(obj: Dict[Any, Any]) -> Any:
    if b"nd" in obj and (obj.keys() == _MSGPACK_NUMPY_ARRAY or obj.keys() == _MSGPACK_NUMPY_SCALAR):
        return _from_msgpack_numpy(obj, False)
    if b"complex" in obj and obj.keys() == _MSGPACK_NUMPY_COMPLEX:
        return complex(obj[b"data"])
    return obj


def _hashable(key: Any) -> Any:
    """A decoded dict key with its lists, which were tuples, back as tuples."""
    return tuple(map(_hashable, key)) if type(key) is list else key


def pairs_hook(object_hook: Callable[[Dict[Any, Any]], Any]) -> Callable[[List[Any]], Any]:
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


def unserializable(owner: str, obj: Any, encode: Callable[[Any], Any]) -> Optional[TypeError]:
    """A TypeError that names what in *obj* *encode* fails on and where it sits,
    or ``None`` if no single value is to blame."""
    found = _locate(obj, encode, ())
    if found is None:
        return None
    path, value, err = found
    hint = ""
    if isinstance(value, int) and not isinstance(value, bool):
        hint = (
            " (msgpack stores ints from -2**63 to 2**64 - 1; send a larger one as a str, or "
            "use PickleSerializer for trusted data)"
        )
    return TypeError(
        f"{owner} cannot serialize {_describe_value(value)} at {_describe_path(path)}: {err}{hint}"
    )
