"""Decoding of messages from peers that may not be trusted: bounded, and never surprising.

:func:`.wire.decode` reads messages from processes this library started; it
trusts their shape. :func:`decode_untrusted` reads the same format from
anyone who can reach a socket, and either returns a :class:`Message` whose
payload has the shape its kind promises or raises :class:`Malformed`
saying what was wrong. It never lets a message allocate much more memory
than the message itself holds:

* The caller bounds the bytes of a message (ZeroMQ's ``MAXMSGSIZE`` on the
  socket bounds each frame; :class:`Limits` bounds their sum and count).
* msgpack's C unpacker allocates a list of the length an array header
  declares before it reads the items, at every level of nesting (up to
  1024 levels), so a few bytes of nested headers declaring huge lengths
  could ask for gigabytes. The fast path therefore caps declared lengths
  (``FAST_MAX_LEN``: 1024 levels of it stay below 64 MiB); a message with a
  longer array or map is decoded again by msgpack's pure-Python unpacker,
  which allocates only for items actually present, with lengths capped by
  the body's size. Nesting deeper than msgpack's stack is an error in both.
* Extension types other than the library's arrays are refused, an array
  frame must exist and have exactly the size its header declares, and no
  frame may be left over: nothing of unknown type reaches the caller.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, NamedTuple, Optional

import numpy as np
from msgpack import fallback as _fallback

from .._arrays import DECODE_HEADERS, ext_hook_writable, pairs_hook, parse_header, remember, unpackb
from .message import DATA, END, ERROR, MARK, Message
from .wire import PREFIX

__all__ = [
    "FAST_MAX_LEN",
    "Limits",
    "Malformed",
    "decode_untrusted",
    "message_bytes",
    "unpack_untrusted",
]

# The longest array (and map) the C unpacker is allowed to pre-allocate: 1024 nested
# levels of 8-byte slots stay below 64 MiB. Longer ones go through the pure-Python path.
FAST_MAX_LEN = 8192
_EXT_ARRAY, _EXT_SCALAR, _EXT_OUT_OF_BAND = 1, 2, 3
_KINDS = (DATA, END, ERROR, MARK)


Hook = Callable[[Dict[Any, Any]], Any]


def _same(obj: Any) -> Any:
    return obj


class Malformed(ValueError):
    """A message that does not follow the format; the text says what is wrong."""


class Limits(NamedTuple):
    """How large a message from an untrusted peer may be."""

    max_bytes: int  #: the sum of the sizes of its frames
    max_frames: int  #: how many frames (the body, then one per large array)


class _ArrayHook:
    """The ``ext_hook`` of one decoding attempt: arrays in the body or in the next frame."""

    __slots__ = ("frames", "used")

    def __init__(self, frames: List[Any]) -> None:
        self.frames = frames
        self.used = 0

    def __call__(self, code: int, data: bytes) -> Any:
        if code in (_EXT_ARRAY, _EXT_SCALAR):
            return ext_hook_writable(code, data)
        if code != _EXT_OUT_OF_BAND:
            raise Malformed(f"an unknown msgpack extension type {code}")
        spec = DECODE_HEADERS.get(data)
        if spec is None:
            spec = remember(DECODE_HEADERS, data, parse_header(data))
        dtype, shape, expected = spec
        if self.used >= len(self.frames):
            raise Malformed("an array's frame is missing")
        buf = self.frames[self.used].buffer
        self.used += 1
        if len(buf) != expected:
            raise Malformed(
                f"an array frame of {len(buf)} bytes, but shape {shape} and dtype {dtype} "
                f"need {expected}"
            )
        return np.ndarray(shape, dtype, buf)


def _in_band(code: int, data: bytes, _writable: Any = ext_hook_writable) -> Any:
    """The ``ext_hook`` of a message without array frames (a function: faster)."""
    if code in (_EXT_ARRAY, _EXT_SCALAR):
        return _writable(code, data)
    if code == _EXT_OUT_OF_BAND:
        raise Malformed("an array's frame is missing")
    raise Malformed(f"an unknown msgpack extension type {code}")


def _hook_for(frames: List[Any]) -> Any:
    return _ArrayHook(frames) if frames else _in_band


def _attempts(body: Any, frames: List[Any], object_hook: Optional[Hook]) -> Any:
    """Decode *body*, trying the fast C unpacker first; the object and the hook used."""
    size = len(body)
    fast = min(size, FAST_MAX_LEN)
    hook = _hook_for(frames)
    extra = {} if object_hook is None else {"object_hook": object_hook}
    try:
        if object_hook is None:
            obj = unpackb(
                body,
                ext_hook=hook,
                raw=False,
                strict_map_key=False,
                max_array_len=fast,
                max_map_len=fast,
            )
        else:
            obj = unpackb(
                body,
                ext_hook=hook,
                object_hook=object_hook,
                raw=False,
                strict_map_key=False,
                max_array_len=fast,
                max_map_len=fast,
            )
        return obj, hook
    except ValueError as err:
        if isinstance(err, Malformed) or "exceeds max_" not in str(err):
            raise
    # A long array or map: the pure-Python unpacker, which allocates as it reads.
    hook = _hook_for(frames)
    obj = _fallback.unpackb(bytes(body), ext_hook=hook, raw=False, strict_map_key=False, **extra)
    return obj, hook


def unpack_untrusted(body: Any, frames: List[Any], object_hook: Optional[Hook] = None) -> Any:
    """The object msgpack *body* holds, its out-of-band arrays taken from *frames*,
    decoded with bounded memory (see the module notes).

    Raises :class:`Malformed` for anything that is not one complete msgpack
    object whose arrays match *frames* exactly. *object_hook* is msgpack's
    (e.g. to read msgpack-numpy maps as arrays).
    """
    try:
        try:
            obj, hook = _attempts(body, frames, object_hook)
        except TypeError:  # a tuple dict key (stored as a list): see MsgpackSerializer.loads
            hook = _hook_for(frames)
            obj = _fallback.unpackb(
                bytes(body),
                ext_hook=hook,
                object_pairs_hook=pairs_hook(object_hook or _same),
                raw=False,
                strict_map_key=False,
            )
    except Malformed:
        raise
    except Exception as err:  # ExtraData, StackError, FormatError, RecursionError, ...
        raise Malformed(f"not valid msgpack ({type(err).__name__}: {err})") from None
    if frames and hook.used != len(frames):
        raise Malformed(f"{len(frames)} array frames, but the body refers to {hook.used}")
    return obj


def message_bytes(frames: List[Any]) -> int:
    """The size of a message: the sum of its frames' sizes."""
    if len(frames) == 1:
        return len(frames[0].buffer)
    return sum(len(frame.buffer) for frame in frames)


def decode_untrusted(frames: List[Any], limits: Limits, nbytes: Optional[int] = None) -> Message:
    """The :class:`Message` of *frames* from an untrusted peer, or :class:`Malformed`.

    *frames* are pyzmq frames (each with a ``.buffer``); *nbytes* is their
    :func:`message_bytes`, if the caller knows it. The payload's shape is
    checked for its kind: ``DATA`` a list, ``END`` a list starting with an
    int, ``ERROR`` a list of strings, ``MARK`` a list of three.
    """
    if not frames:
        raise Malformed("an empty message")
    if len(frames) > limits.max_frames:
        raise Malformed(f"{len(frames)} frames, more than the limit of {limits.max_frames}")
    total = message_bytes(frames) if nbytes is None else nbytes
    if total > limits.max_bytes:
        raise Malformed(f"{total} bytes, more than the limit of {limits.max_bytes}")
    head = frames[0].buffer
    if len(head) < PREFIX.size:
        raise Malformed(f"a first frame of {len(head)} bytes, shorter than the prefix")
    kind, worker, epoch = PREFIX.unpack_from(head)
    if kind not in _KINDS:
        raise Malformed(f"an unknown kind {kind}")
    payload = unpack_untrusted(head[PREFIX.size :], frames[1:])
    if type(payload) is not list:
        raise Malformed(f"a body of type {type(payload).__name__}, not a list")
    if kind == END and not (payload and type(payload[0]) is int):
        raise Malformed("an end-of-pass message without a count")
    if kind == ERROR and not (len(payload) >= 2 and all(type(part) is str for part in payload[:3])):
        raise Malformed("an error report that is not a list of strings")
    if kind == MARK and len(payload) != 3:
        raise Malformed(f"a heartbeat of {len(payload)} parts, not 3")
    return Message(kind, worker, epoch, payload)
