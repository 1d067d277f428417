"""The wire format of the transport: framing, packing, and the batching rule.

**Messages.** A message is a list of frames. The first frame starts with a
7-byte prefix (``kind``: uint8, ``worker``: uint16, ``epoch``: uint32,
little-endian) followed by a msgpack body; the kinds are those of
:mod:`.message`:

* ``DATA``: a msgpack array of items (datapoints, or ``[epoch, seq, result]``
  triples for mappers). Small datapoints are batched, several to a message,
  which is what makes them fast. A numpy array of at least
  ``OUT_OF_BAND_BYTES`` does not travel inside the msgpack body: the body
  holds extension type 3 with the array's header (dtype and shape, see
  :mod:`dataflow._arrays`), and the array's raw bytes follow as a frame of
  their own, one per array in the order they appear. They are sent without
  copying where the transport allows (ZeroMQ reads the array's memory) and
  received as writable arrays that view the frame.
* ``END``: ``[count]`` or ``[count, state]``.
* ``MARK``: ``[count, state, problem]``.
* ``ERROR``: ``[type name, message, traceback]``.

**Batching** (the one rule, used by every sender that batches: see
:class:`dataflow._transport.zmq.BatchSender`). A batch leaves when it holds
``BATCH_BYTES`` or ``BATCH_ITEMS``, when its oldest item has waited
``BATCH_DELAY_S``, or at once when the item took longer than ``EAGER_S`` to
make (batching then gains nothing). The thread that makes the items sends
most batches itself, as it adds to them; a batch that would otherwise wait
for the next item (the source blocks, or computes for a long time) is sent
by a flusher thread once its oldest item is ``BATCH_DELAY_S`` old.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Dict, List, Optional

import numpy as np
from msgpack import ExtType

from .._arrays import (
    DECODE_HEADERS,
    ENCODE_HEADERS,
    Packer,
    ext_hook_writable,
    msgpack_default,
    new_header,
    pairs_hook,
    parse_header,
    plain_array,
    remember,
    unpackb,
    unserializable,
)
from ..serialize import Serializer
from .message import DATA, END, ERROR, MARK, Message
from .shm import ArenaReader, ArenaWriter

assert DATA == 1  # remote.py tells these messages from tensorpack's by their first byte

__all__ = [
    "BATCH_BYTES",
    "BATCH_DELAY_S",
    "BATCH_ITEMS",
    "EAGER_S",
    "OUT_OF_BAND_BYTES",
    "PREFIX",
    "ItemPacker",
    "decode",
    "encode",
    "encode_end",
    "encode_mark",
    "encode_report",
]

PREFIX = struct.Struct("<BHI")
_EXT_OUT_OF_BAND = 3
_EXT_SHARED = 4  # an array in the shared-memory arena: descriptor + header (see .shm)
_NO_SLOTS: List[int] = []
# Arrays at least this large travel as frames of their own, without copies.
OUT_OF_BAND_BYTES = 1 << 16
# A sender sends what it has batched once it holds this many bytes or items ...
BATCH_BYTES = 1 << 16
BATCH_ITEMS = 256
# ... or once the oldest batched item has waited this long, or immediately when
# producing an item took longer than EAGER_S (batching then gains nothing).
BATCH_DELAY_S = 0.005
EAGER_S = 0.001


# ---- encoding -------------------------------------------------------------------


class ItemPacker:
    """msgpack packing of items, with large arrays split off as separate frames, or
    copied into a shared-memory arena by *shm* (see :mod:`.shm`).

    ``frames`` are the arrays to send beside the packed items, and ``slots``
    the arena tickets they hold; :meth:`sent` or :meth:`discard` ends both.
    """

    def __init__(
        self, owner: str, serializer: Optional[Serializer], shm: Optional[ArenaWriter] = None
    ) -> None:
        self.owner = owner
        self.serializer = serializer
        self.frames: List[Any] = []
        self.shm = shm
        self.slots = _NO_SLOTS if shm is None else shm.pending
        self._packer = Packer(default=self._default, use_bin_type=True, strict_types=True)

    def _default(self, obj: Any) -> Any:
        if type(obj) is not np.ndarray and isinstance(obj, np.ndarray):
            obj = plain_array(obj)  # np.memmap slices (a masked array raises)
        if type(obj) is np.ndarray and obj.nbytes >= OUT_OF_BAND_BYTES:
            key = (obj.dtype, obj.shape)
            entry = ENCODE_HEADERS.get(key)
            if entry is None:
                entry = remember(ENCODE_HEADERS, key, new_header(*key))
            header, exportable = entry
            if exportable:
                if self.shm is not None:
                    descriptor = self.shm.put(obj)
                    if descriptor is not None:
                        return ExtType(_EXT_SHARED, descriptor + header)
                self.frames.append(obj if obj.flags.c_contiguous else np.ascontiguousarray(obj))
                return ExtType(_EXT_OUT_OF_BAND, header)
        return msgpack_default(obj)

    def pack(self, item: Any) -> bytes:
        """The msgpack bytes of *item*; its large arrays are appended to ``self.frames``
        (or placed in the arena, their tickets appended to ``self.slots``)."""
        if self.serializer is not None:
            return self._packer.pack(self.serializer.dumps(item))
        n_frames, n_slots = len(self.frames), len(self.slots)
        try:
            return self._packer.pack(item)
        except BaseException as err:
            del self.frames[n_frames:]
            if self.shm is not None:
                self.shm.discard(n_slots)
            if not isinstance(err, (TypeError, ValueError, OverflowError)):
                raise
            shm, self.shm = self.shm, None  # only to find the culprit: place nothing
            try:
                located = unserializable(self.owner, item, self._packer.pack)
            finally:
                self.shm = shm
                del self.frames[n_frames:]
            if located is None:
                raise
            raise located from err

    def sent(self) -> None:
        """The frames and slots were handed to the transport."""
        self.frames = []
        if self.shm is not None:
            self.shm.sent()

    def discard(self) -> None:
        """Drop the frames and give back the slots of items that will not be sent."""
        self.frames = []
        if self.shm is not None:
            self.shm.discard()


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def encode(kind: int, index: int, epoch: int, chunks: List[bytes], frames: List[Any]) -> List[Any]:
    """The frames of a message whose body is the msgpack array of the packed *chunks*."""
    head = PREFIX.pack(kind, index, epoch) + _array_header(len(chunks))
    return [head + b"".join(chunks), *frames]


# ---- decoding -------------------------------------------------------------------


def _out_of_band_hook(
    frames: List[Any], shm: Optional[ArenaReader], worker: int, shared: Dict[bytes, Any]
) -> Callable[[int, bytes], Any]:
    """The ``ext_hook`` of one attempt to decode a message. *shared*: the arrays
    made from arena descriptors, kept across attempts, so that a second attempt
    reuses them (a second array of the same room would release it twice)."""
    pending = iter(frames)

    def hook(code: int, data: bytes) -> Any:
        if code != _EXT_OUT_OF_BAND:
            if code == _EXT_SHARED and shm is not None:
                array = shared.get(data)
                if array is None:
                    array = shared[data] = shm.array(worker, data)
                return array
            return ext_hook_writable(code, data)
        if shm is not None:
            shm.frames_used(worker)
        spec = DECODE_HEADERS.get(data)  # the header only: the bytes are the next frame
        if spec is None:
            spec = remember(DECODE_HEADERS, data, parse_header(data))
        dtype, shape, expected = spec
        frame = next(pending, None)
        if frame is None:
            raise ValueError("corrupt message: an array's frame is missing")
        buf = frame.buffer
        if len(buf) != expected:
            raise ValueError(
                f"corrupt message: an array frame of {len(buf)} bytes, but shape {shape} and "
                f"dtype {dtype} need {expected}"
            )
        return np.ndarray(shape, dtype, buf)

    return hook


def _unpack(body: Any, make_hook: Callable[[], Callable[[int, bytes], Any]]) -> Any:
    """Decode *body*; each attempt gets a new ``ext_hook`` from *make_hook*."""
    try:
        return unpackb(body, ext_hook=make_hook(), raw=False, strict_map_key=False)
    except TypeError:  # a tuple dict key (stored as a list): see MsgpackSerializer.loads
        return unpackb(
            body,
            ext_hook=make_hook(),
            object_pairs_hook=pairs_hook(lambda d: d),
            raw=False,
            strict_map_key=False,
        )


def _plain_hook() -> Callable[[int, bytes], Any]:
    return ext_hook_writable


def decode(
    frames: List[Any], serializer: Optional[Serializer], shm: Optional[ArenaReader] = None
) -> Message:
    """The :class:`Message` of received frames (each with a ``.buffer``, as pyzmq's);
    arrays in a shared-memory arena are read through *shm*."""
    head = frames[0].buffer
    kind, worker, epoch = PREFIX.unpack_from(head)
    body = head[PREFIX.size :]
    if len(frames) == 1 and shm is None:
        payload = _unpack(body, _plain_hook)
    else:
        shared: Dict[bytes, Any] = {}
        payload = _unpack(body, lambda: _out_of_band_hook(frames[1:], shm, worker, shared))
    if kind == DATA and serializer is not None:
        payload = [serializer.loads(b) for b in payload]
    return Message(kind, worker, epoch, payload)


def encode_report(index: int, epoch: int, report: List[Any]) -> List[Any]:
    """The frames of an ``ERROR`` message carrying *report*."""
    return [PREFIX.pack(ERROR, index, epoch) + Packer(use_bin_type=True).pack(list(report))]


def encode_end(index: int, epoch: int, count: int, state: Any = None) -> List[Any]:
    """The frames of an ``END`` message: pass *epoch* ended after *count* items."""
    body = [count] if state is None else [count, state]
    return [PREFIX.pack(END, index, epoch) + Packer(use_bin_type=True).pack(body)]


def encode_mark(
    index: int, epoch: int, count: int, state: Any, problem: Optional[str]
) -> List[Any]:
    """The frames of a ``MARK`` message: the *state* after *count* items of *epoch*."""
    body = [count, state, problem]
    return [PREFIX.pack(MARK, index, epoch) + Packer(use_bin_type=True).pack(body)]
