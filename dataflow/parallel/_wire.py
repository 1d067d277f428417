"""The ZeroMQ transport between worker processes and the consumer.

**Messages.** Every message is a ZeroMQ multipart message. Its first frame
starts with a 7-byte prefix (``kind``: uint8, ``worker``: uint16, ``epoch``:
uint32, little-endian) followed by a msgpack body:

* ``DATA``: a msgpack array of items (datapoints, or ``[seq, result]`` pairs
  for mappers). Small datapoints are batched, several to a message, which is
  what makes them fast. A numpy array of at least ``_OUT_OF_BAND_BYTES``
  does not travel inside the msgpack body: the body holds extension type 3
  with the array's header (dtype and shape, see :mod:`dataflow.serialize`),
  and the array's raw bytes follow as a frame of their own, one per array
  in the order they appear. They are sent without copying (ZeroMQ reads the
  array's memory) and received as writable arrays that view the frame.
* ``END``: ``[count]``, the worker finished pass *epoch* after sending *count* items.
* ``ERROR``: ``[type name, message, traceback]``; the worker stops after sending it.

**Sockets.** The consumer binds a PULL socket; workers connect PUSH
sockets. PUSH blocks at the high-water mark instead of dropping, and every
blocking send polls in short slices, checking that the consumer still wants
data and that the parent lives.

**Batching.** A batch leaves when it is full, when its oldest item has
waited ``_BATCH_DELAY_S``, or at once when the item took long to make. The
thread that makes the items sends most batches itself, as it adds to them;
a batch that would otherwise wait for the next item (the source blocks, or
computes for a long time) is sent by a flusher thread once its oldest item
is ``_BATCH_DELAY_S`` old. Both threads use the socket under one lock, which
also gives the full memory barrier that ZeroMQ asks for when a socket moves
between threads. The flusher never blocks while it holds the lock: at the
high-water mark it leaves the batch where it is, to which later items are
added in order, and tries again a little later.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
import time
import uuid
from typing import Any, Callable, List, Optional, Tuple

import numpy as np
import zmq
from msgpack import ExtType

from ..serialize import (
    _DECODE_HEADERS,
    _ENCODE_HEADERS,
    Packer,
    Serializer,
    _ext_hook_writable,
    _msgpack_default,
    _new_header,
    _pairs_hook,
    _parse_header,
    _remember,
    _unserializable,
    unpackb,
)
from ._common import _POLL_S, parent_alive

DATA, END, ERROR = 1, 2, 3
_PREFIX = struct.Struct("<BHI")
_EXT_OUT_OF_BAND = 3
# Arrays at least this large travel as frames of their own, without copies.
_OUT_OF_BAND_BYTES = 1 << 16
# A worker sends what it has batched once it holds this many bytes or items ...
_BATCH_BYTES = 1 << 16
_BATCH_ITEMS = 256
# ... or once the oldest batched item has waited this long, or immediately when
# producing an item took longer than _EAGER_S (batching then gains nothing).
_BATCH_DELAY_S = 0.005
_EAGER_S = 0.001
# The flusher, at the high-water mark, tries again after this long, doubling up to
# _POLL_S; with no batch waiting it looks whether it should end this often.
_RETRY_S = 0.002
_IDLE_S = 1.0
# How long closing waits for the flusher to end (it ends within a few microseconds).
_FLUSHER_JOIN_S = 5.0
_POLL_MS = int(_POLL_S * 1000)
_monotonic = time.monotonic
_RECONNECT_MS = 5
# Plain ints: pyzmq's flag enums cost a few microseconds per frame in send_multipart.
_NOBLOCK = int(zmq.NOBLOCK)
_NOBLOCK_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)


def send_frames(sock: zmq.Socket, frames: List[Any], copy: bool) -> None:
    """Send *frames* as one multipart message without blocking (raises ``zmq.Again``
    at the high-water mark before any frame is queued: ZeroMQ queues all or none)."""
    last = len(frames) - 1
    for i in range(last):
        sock.send(frames[i], _NOBLOCK_MORE, copy=copy)
    sock.send(frames[last], _NOBLOCK, copy=copy)


class Stopped(Exception):
    """Raised in a worker when the consumer asked it to stop, or its parent died."""


def private_address() -> Optional[str]:
    """A fresh private address to bind later: an abstract ``ipc://`` socket on Linux;
    ``None`` elsewhere (a loopback TCP port is known only once bound)."""
    if sys.platform.startswith("linux") and zmq.has("ipc"):
        return f"ipc://@dataflow-{os.getpid()}-{uuid.uuid4().hex}"
    return None


def new_address(ctx: zmq.Context, sock: zmq.Socket) -> str:
    """Bind *sock* to a fresh private address and return it.

    An abstract ``ipc://`` socket on Linux (no file to clean up), loopback TCP elsewhere.
    """
    address = private_address()
    if address is not None:
        sock.bind(address)
        return address
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    return f"tcp://127.0.0.1:{port}"


# ---- encoding -------------------------------------------------------------------


class ItemPacker:
    """msgpack packing of items, with large arrays split off as separate frames."""

    def __init__(self, owner: str, serializer: Optional[Serializer]) -> None:
        self.owner = owner
        self.serializer = serializer
        self.frames: List[Any] = []
        self._packer = Packer(default=self._default, use_bin_type=True, strict_types=True)

    def _default(self, obj: Any) -> Any:
        if type(obj) is np.ndarray and obj.nbytes >= _OUT_OF_BAND_BYTES:
            key = (obj.dtype, obj.shape)
            entry = _ENCODE_HEADERS.get(key)
            if entry is None:
                entry = _remember(_ENCODE_HEADERS, key, _new_header(*key))
            header, exportable = entry
            if exportable:
                self.frames.append(obj if obj.flags.c_contiguous else np.ascontiguousarray(obj))
                return ExtType(_EXT_OUT_OF_BAND, header)
        return _msgpack_default(obj)

    def pack(self, item: Any) -> bytes:
        """The msgpack bytes of *item*; its large arrays are appended to ``self.frames``."""
        if self.serializer is not None:
            return self._packer.pack(self.serializer.dumps(item))
        n_frames = len(self.frames)
        try:
            return self._packer.pack(item)
        except (TypeError, ValueError, OverflowError) as err:
            del self.frames[n_frames:]
            located = _unserializable(self.owner, item, self._packer.pack)
            del self.frames[n_frames:]
            if located is None:
                raise
            raise located from err


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def encode(kind: int, index: int, epoch: int, chunks: List[bytes], frames: List[Any]) -> List[Any]:
    """The frames of a message whose body is the msgpack array of the packed *chunks*."""
    head = _PREFIX.pack(kind, index, epoch) + _array_header(len(chunks))
    return [head + b"".join(chunks), *frames]


# ---- decoding -------------------------------------------------------------------


def _out_of_band_hook(frames: List[Any]) -> Callable[[int, bytes], Any]:
    pending = iter(frames)

    def hook(code: int, data: bytes) -> Any:
        if code != _EXT_OUT_OF_BAND:
            return _ext_hook_writable(code, data)
        spec = _DECODE_HEADERS.get(data)  # the header only: the bytes are the next frame
        if spec is None:
            spec = _remember(_DECODE_HEADERS, data, _parse_header(data))
        dtype, shape, expected = spec
        frame = next(pending)
        buf = frame.buffer
        if len(buf) != expected:
            raise ValueError(
                f"corrupt message: an array frame of {len(buf)} bytes, but shape {shape} and "
                f"dtype {dtype} need {expected}"
            )
        return np.ndarray(shape, dtype, buf)

    return hook


def _unpack(body: Any, ext_hook: Callable[[int, bytes], Any]) -> Any:
    try:
        return unpackb(body, ext_hook=ext_hook, raw=False, strict_map_key=False)
    except TypeError:  # a tuple dict key (stored as a list): see MsgpackSerializer.loads
        return unpackb(
            body,
            ext_hook=ext_hook,
            object_pairs_hook=_pairs_hook(lambda d: d),
            raw=False,
            strict_map_key=False,
        )


def decode(frames: List[Any], serializer: Optional[Serializer]) -> Tuple[int, int, int, Any]:
    """``(kind, worker, epoch, payload)`` of a received multipart message."""
    head = frames[0].buffer
    kind, worker, epoch = _PREFIX.unpack_from(head)
    body = head[_PREFIX.size :]
    if len(frames) == 1:
        payload = _unpack(body, _ext_hook_writable)
    else:
        payload = _unpack(body, _out_of_band_hook(frames[1:]))
    if kind == DATA and serializer is not None:
        payload = [serializer.loads(b) for b in payload]
    return kind, worker, epoch, payload


# ---- the two ends -----------------------------------------------------------------


class Receiver:
    """The consumer's end: a bound PULL socket."""

    def __init__(
        self,
        ctx: zmq.Context,
        hwm: int,
        serializer: Optional[Serializer],
        address: Optional[str] = None,
    ) -> None:
        self.serializer = serializer
        self.sock = ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        self._timeout_ms = -1  # the socket's receive timeout (ZeroMQ's default: none)
        if address is None:
            self.address = new_address(ctx, self.sock)
        else:  # a private_address() the workers already know
            self.sock.bind(address)
            self.address = address

    def recv(self, timeout_s: float) -> Optional[Tuple[int, int, int, Any]]:
        """The next message, or ``None`` if none arrived within *timeout_s*."""
        # A receive timeout rather than poll-then-receive: one call per message, and
        # no exception while messages keep coming. Ctrl-C still interrupts the wait.
        ms = max(0, int(timeout_s * 1000))
        if ms != self._timeout_ms:
            self.sock.setsockopt(zmq.RCVTIMEO, ms)
            self._timeout_ms = ms
        try:
            frames = self.sock.recv_multipart(copy=False)
        except zmq.Again:
            return None
        return decode(frames, self.serializer)

    def close(self) -> None:
        self.sock.close(linger=0)


class BatchSender:
    """Items packed and batched into ``DATA`` messages on a connected PUSH *sock*.

    :meth:`put` sends the batch when it is full, when the item took long to
    make, or when the oldest item has waited ``_BATCH_DELAY_S``; otherwise a
    flusher thread, started at the first batch that waits, sends it once it
    is that old (see the module's notes on batching). A subclass defines
    :meth:`_send`, the blocking send of one message, which runs under the
    lock. Call :meth:`stop_flusher` before the socket is closed.

    The socket is used only under the lock. The batch, a list that is never
    replaced, is not: :meth:`put`, the only thread that adds to it, appends
    without the lock (``list.append`` is atomic), which keeps the path of
    most items as fast as it was without a flusher; items are removed only
    under the lock, the first *n* once they were sent, so none is lost or
    sent twice. The bookkeeping beside it (size, age) may then be stale, but
    only ever makes a batch leave early, never late.
    """

    copy = False  # whether ZeroMQ copies the frames (else it reads them later)

    def __init__(self, sock: zmq.Socket, index: int, epoch: int, packer: ItemPacker) -> None:
        self.sock = sock
        self.index = index
        self.epoch = epoch
        self.packer = packer
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        # The batch: its packed items, their size, when the first was added, and
        # the pass it belongs to.
        self._chunks: List[bytes] = []
        self._bytes = 0
        self._first_time = 0.0
        self._batch_epoch = epoch
        self._last_put = 0.0  # when the previous put() returned
        self._sent_any = False
        self._flusher: Optional[threading.Thread] = None
        # Whether put() must start the flusher or wake it (it waits for a batch).
        self._rouse = True
        self._stopping = False

    def _send(self, frames: List[Any]) -> None:
        raise NotImplementedError

    def put(self, item: Any) -> None:
        """Batch *item*; send the batch when it is full or has waited long enough."""
        chunk = self.packer.pack(item)
        now = _monotonic()
        chunks = self._chunks
        if self.packer.frames or not self._sent_any:  # not to be left to the flusher
            with self._lock:
                if not chunks:
                    self._batch_epoch = self.epoch
                chunks.append(chunk)
                self._flush_locked()
            self._last_put = _monotonic()
            return
        # The path of most items takes no lock: see the class notes.
        if not chunks:
            self._first_time = now
            self._batch_epoch = self.epoch
        chunks.append(chunk)
        nbytes = self._bytes = self._bytes + len(chunk)
        if (
            nbytes >= _BATCH_BYTES
            or len(chunks) >= _BATCH_ITEMS
            or now - self._last_put > _EAGER_S
            or now - self._first_time > _BATCH_DELAY_S
        ):
            with self._lock:
                self._flush_locked()
            now = _monotonic()  # the time to make the next item starts now
        elif self._rouse:
            with self._lock:
                self._rouse_flusher()
        self._last_put = now

    def _rouse_flusher(self) -> None:
        """Start the flusher, or wake it from waiting for a batch (under the lock)."""
        self._rouse = False
        if self._stopping:
            return
        if self._flusher is None:
            thread = threading.Thread(
                target=self._run_flusher, name=f"dataflow-flusher-{self.index}", daemon=True
            )  # a daemon: should stop_flusher() not be called, the process still exits
            thread.start()
            self._flusher = thread
        else:
            self._wake.notify()

    def _flush_locked(self) -> None:
        """Send the batch, blocking while the queue is full (the caller holds the lock)."""
        chunks = self._chunks
        if not chunks:  # the flusher sent it meanwhile
            return
        frames = self.packer.frames
        message = encode(DATA, self.index, self._batch_epoch, chunks[:], frames)
        del chunks[:]
        self._bytes, self.packer.frames = 0, []
        self._send(message)
        self._sent_any = True

    def flush(self) -> None:
        """Send what is batched."""
        with self._lock:
            self._flush_locked()

    def _run_flusher(self) -> None:
        """Send each batch whose oldest item is _BATCH_DELAY_S old, until stop_flusher()."""
        retry = _RETRY_S
        wake = self._wake
        chunks = self._chunks
        with wake:
            while not self._stopping:
                # First this, then the look at the batch: put() appends, then reads it.
                self._rouse = True
                n = len(chunks)
                if not n:
                    wake.wait(_IDLE_S)
                    continue
                self._rouse = False
                wait = self._first_time + _BATCH_DELAY_S - time.monotonic()
                if wait > 0:
                    wake.wait(wait)
                    continue
                # The first n items: put() only appends, and only under this lock
                # does anyone remove. They have no frames of their own: put() sends
                # those at once.
                message = encode(DATA, self.index, self._batch_epoch, chunks[:n], [])
                try:
                    send_frames(self.sock, message, self.copy)
                except zmq.Again:  # the queue is full: the batch stays, and grows
                    wake.wait(retry)
                    retry = min(2 * retry, _POLL_S)
                    continue
                except zmq.ZMQError:  # the socket is unusable: put() will say so
                    return
                retry = _RETRY_S
                del chunks[:n]
                self._bytes = 0
                self._sent_any = True

    def stop_flusher(self) -> None:
        """End the flusher thread, if one started; what is batched stays batched."""
        thread = self._flusher
        if thread is None:
            return
        with self._wake:
            self._stopping = True
            self._wake.notify()
        thread.join(_FLUSHER_JOIN_S)
        self._flusher = None


class Sender(BatchSender):
    """A worker's end: a PUSH socket that batches small items and never blocks forever."""

    def __init__(
        self,
        ctx: zmq.Context,
        address: str,
        hwm: int,
        index: int,
        owner: str,
        stop_event: Any,
        parent_pid: int,
        serializer: Optional[Serializer],
    ) -> None:
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.LINGER, 0)
        # The consumer may bind only after the workers started: retry the connection
        # every few ms rather than ZeroMQ's default 100 ms.
        sock.setsockopt(zmq.RECONNECT_IVL, _RECONNECT_MS)
        sock.connect(address)
        super().__init__(sock, index, 0, ItemPacker(owner, serializer))
        self.stop_event = stop_event
        self.parent_pid = parent_pid

    def check_stop(self) -> None:
        if self.stop_event.is_set() or not parent_alive(self.parent_pid):
            raise Stopped

    def _send(self, frames: List[Any]) -> None:
        sock = self.sock
        while True:
            try:
                send_frames(sock, frames, False)
                return
            except zmq.Again:
                pass
            if not sock.poll(_POLL_MS, zmq.POLLOUT):
                self.check_stop()

    def put_now(self, item: Any) -> None:
        """Batch *item* only while the batch is small and young (the caller flushes)."""
        chunk = self.packer.pack(item)
        with self._lock:
            if not self._chunks:
                self._first_time = time.monotonic()
                self._batch_epoch = self.epoch
            self._chunks.append(chunk)
            self._bytes += len(chunk)
            if (
                self.packer.frames
                or self._bytes >= _BATCH_BYTES
                or len(self._chunks) >= _BATCH_ITEMS
                or time.monotonic() - self._first_time > _BATCH_DELAY_S
            ):
                self._flush_locked()

    def flush(self) -> None:
        self.check_stop()
        super().flush()

    def discard(self) -> None:
        """Drop what is batched and not yet sent (e.g. items of an abandoned pass)."""
        with self._lock:
            del self._chunks[:]
            self._bytes, self.packer.frames = 0, []

    def send_end(self, count: int) -> None:
        """Send what is batched, then the end of pass ``self.epoch`` after *count* items."""
        self.check_stop()
        with self._lock:
            self._flush_locked()
            self._send([_PREFIX.pack(END, self.index, self.epoch) + self.packer.pack([count])])

    def send_error(self, report: Tuple[str, str, str]) -> None:
        """Send an error report (after what is batched), waiting up to a few seconds."""
        try:
            self.flush()  # what was yielded before the error still counts
        except Stopped:
            return
        except Exception:  # e.g. the batch itself cannot be sent: report the first error
            self.discard()
        message = _PREFIX.pack(ERROR, self.index, self.epoch) + Packer(use_bin_type=True).pack(
            list(report)
        )
        with self._lock:
            self.sock.setsockopt(zmq.LINGER, 5000)
            try:
                self._send([message])
            except Stopped:
                pass

    def close(self) -> None:
        self.stop_flusher()
        self.sock.close()
