"""The ZeroMQ transport: addresses, the consumer's receiver, the workers' senders.

**Sockets.** The consumer binds a PULL socket; workers connect PUSH
sockets. PUSH blocks at the high-water mark instead of dropping, and every
blocking send polls in short slices, asking the caller's *stopped* whether
it should still wait (the consumer closed, the parent died).

**Batching** follows :mod:`.wire`. Both the thread that makes the items
and the flusher thread use the socket under one lock, which also gives the
full memory barrier that ZeroMQ asks for when a socket moves between
threads. The flusher never blocks while it holds the lock: at the
high-water mark it leaves the batch where it is, to which later items are
added in order, and tries again a little later.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from typing import Any, Callable, List, Optional, Sequence

import zmq

from ..serialize import Serializer
from .message import DATA, Message, Stopped
from .shm import Arena, ArenaReader, ArenaWriter
from .waits import pause_signals
from .wire import (
    BATCH_BYTES,
    BATCH_DELAY_S,
    BATCH_ITEMS,
    EAGER_S,
    ItemPacker,
    decode,
    encode,
    encode_end,
    encode_mark,
    encode_report,
)

__all__ = [
    "BatchSender",
    "ZmqReceiver",
    "ZmqSender",
    "new_address",
    "private_address",
    "send_frames",
]

# How long a blocked send waits before asking whether it should stop.
POLL_S = 0.1
_POLL_MS = int(POLL_S * 1000)
# The flusher, at the high-water mark, tries again after this long, doubling up to
# POLL_S; with no batch waiting it looks whether it should end this often.
_RETRY_S = 0.002
_IDLE_S = 1.0
# How long closing waits for the flusher to end (it ends within a few microseconds).
_FLUSHER_JOIN_S = 5.0
# The consumer may bind only after the workers started: they retry every few ms.
RECONNECT_MS = 5
_monotonic = time.monotonic
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


# ---- the two ends -----------------------------------------------------------------


class ZmqReceiver:
    """The consumer's end: a bound PULL socket (a :class:`~.message.Receiver`);
    arrays the workers placed in *arena* are received as views of it."""

    def __init__(
        self,
        ctx: zmq.Context,
        hwm: int,
        serializer: Optional[Serializer],
        address: Optional[str] = None,
        arena: Optional[Arena] = None,
        owner: str = "",
    ) -> None:
        self.serializer = serializer
        self.shm = None if arena is None else ArenaReader(arena, owner)
        self.sock = ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        self._timeout_ms = -1  # the socket's receive timeout (ZeroMQ's default: none)
        if address is None:
            self.address = new_address(ctx, self.sock)
        else:  # a private_address() the workers already know
            self.sock.bind(address)
            self.address = address

    def recv(self, timeout_s: float) -> Optional[Message]:
        """The next message, or ``None`` if none arrived within *timeout_s*."""
        # A receive timeout rather than poll-then-receive: one call per message, and
        # no exception while messages keep coming. Ctrl-C still interrupts the wait.
        ms = max(0, int(timeout_s * 1000))
        if ms != self._timeout_ms:
            self.sock.setsockopt(zmq.RCVTIMEO, ms)
            self._timeout_ms = ms
        shm = self.shm
        if shm is not None and ms:
            shm.wait_begins()  # workers waiting for room the consumer holds send frames
        resume = pause_signals() if ms else None
        try:
            frames = self.sock.recv_multipart(copy=False)
        except zmq.Again:
            return None
        finally:
            if resume is not None:
                resume()
        if shm is not None:
            shm.wait_ends()
        return decode(frames, self.serializer, shm)

    def close(self) -> None:
        if self.shm is not None:
            self.shm.wait_ends()
        self.sock.close(linger=0)


class BatchSender:
    """Items packed and batched into ``DATA`` messages on a connected PUSH *sock*.

    :meth:`put` sends the batch when it is full, when the item took long to
    make, or when the oldest item has waited ``BATCH_DELAY_S``; otherwise a
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
        #: seconds spent waiting for room in the consumer's queue; and since when it
        #: waits now (0.0: it does not)
        self.blocked_s = 0.0
        self.blocked_since = 0.0
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
        packer = self.packer
        if packer.frames or packer.slots or not self._sent_any:  # not for the flusher
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
            nbytes >= BATCH_BYTES
            or len(chunks) >= BATCH_ITEMS
            or now - self._last_put > EAGER_S
            or now - self._first_time > BATCH_DELAY_S
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
        self._bytes = 0
        self.packer.sent()
        self._send(message)
        self._sent_any = True

    def flush(self) -> None:
        """Send what is batched."""
        with self._lock:
            self._flush_locked()

    def _run_flusher(self) -> None:
        """Send each batch whose oldest item is BATCH_DELAY_S old, until stop_flusher()."""
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
                wait = self._first_time + BATCH_DELAY_S - time.monotonic()
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
                    retry = min(2 * retry, POLL_S)
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


class ZmqSender(BatchSender):
    """A worker's end: a PUSH socket connected to *address*, which batches small
    items and never blocks forever (a :class:`~.message.Sender`).

    *stopped* is asked while a send blocks, and by :meth:`check_stop`:
    when it returns true, :class:`~.message.Stopped` is raised. Large arrays
    go through *arena* where one is given (see :mod:`.shm`).
    """

    def __init__(
        self,
        ctx: zmq.Context,
        address: str,
        hwm: int,
        index: int,
        owner: str,
        stopped: Callable[[], bool],
        serializer: Optional[Serializer],
        arena: Optional[Arena] = None,
    ) -> None:
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.LINGER, 0)
        # The consumer may bind only after the workers started: retry the connection
        # every few ms rather than ZeroMQ's default 100 ms.
        sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
        sock.connect(address)
        writer = None if arena is None else ArenaWriter(arena, index, self.check_stop)
        super().__init__(sock, index, 0, ItemPacker(owner, serializer, writer))
        self.stopped = stopped

    def check_stop(self) -> None:
        if self.stopped():
            raise Stopped

    def _send(self, frames: List[Any]) -> None:
        sock = self.sock
        try:
            send_frames(sock, frames, False)
            return
        except zmq.Again:  # the consumer's queue is full: wait for room
            pass
        begin = self.blocked_since = _monotonic()
        try:
            while True:
                if not sock.poll(_POLL_MS, zmq.POLLOUT):
                    self.check_stop()
                try:
                    send_frames(sock, frames, False)
                    return
                except zmq.Again:
                    pass
        finally:
            self.blocked_since = 0.0
            self.blocked_s += _monotonic() - begin

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
                or self.packer.slots
                or self._bytes >= BATCH_BYTES
                or len(self._chunks) >= BATCH_ITEMS
                or time.monotonic() - self._first_time > BATCH_DELAY_S
            ):
                self._flush_locked()
            elif self._rouse:  # the flusher sends it if the next item takes long
                self._rouse_flusher()

    def flush(self) -> None:
        self.check_stop()
        super().flush()

    def discard(self) -> None:
        """Drop what is batched and not yet sent (e.g. items of an abandoned pass)."""
        with self._lock:
            del self._chunks[:]
            self._bytes = 0
            self.packer.discard()

    def send_end(self, count: int, state: Any = None) -> None:
        """Send what is batched, then the end of pass ``self.epoch`` after *count* items."""
        self.check_stop()
        with self._lock:
            self._flush_locked()
            self._send(encode_end(self.index, self.epoch, count, state))

    def send_mark(self, count: int, state: Any, problem: Optional[str] = None) -> None:
        """Send what is batched, then the *state* after *count* items (a ``MARK``)."""
        self.check_stop()
        with self._lock:
            self._flush_locked()
            self._send(encode_mark(self.index, self.epoch, count, state, problem))

    def send_error(self, report: Sequence[str], exc: Optional[BaseException] = None) -> None:
        """Send an error report (after what is batched), waiting up to a few seconds."""
        try:
            self.flush()  # what was yielded before the error still counts
        except Stopped:
            return
        except Exception:  # e.g. the batch itself cannot be sent: report the first error
            self.discard()
        message = encode_report(self.index, self.epoch, list(report)[:3])
        with self._lock:
            self.sock.setsockopt(zmq.LINGER, 5000)
            try:
                self._send(message)
            except Stopped:
                pass

    def close(self) -> None:
        self.stop_flusher()
        self.sock.close()
