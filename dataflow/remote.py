"""Stream datapoints from one machine to another over ZeroMQ.

:func:`send_dataflow_zmq` runs a dataflow and pushes its datapoints to a
ZeroMQ endpoint; :class:`RemoteDataZMQ` pulls them from one or two endpoints
and yields them. Either side may bind; by default the receiver binds and
any number of senders connect to it.

**Messages.** The transport of the ZeroMQ dataflows
(:mod:`dataflow._transport.wire`): a multipart message whose first frame holds
a 7-byte prefix and a msgpack array of datapoints, several small datapoints
to a message, with numpy arrays of 64 KiB or more as raw frames of their
own. In the prefix, the kind is ``DATA``, the "worker" field holds
``0xDF00`` plus the codec (0: the built-in msgpack encoding, 1: each
datapoint pickled, 2: each datapoint encoded by the sender's
``serializer``), and the "epoch" field holds the version of this protocol,
so that a receiver recognizes a message it cannot read instead of
misreading it. The receiver also reads the single-frame messages of
tensorpack's ``send_dataflow_zmq`` (one msgpack-numpy or pickle payload per
datapoint): those never start with the ``DATA`` byte ``0x01``.
"""

from __future__ import annotations

import logging
import math
import pickle
import time
import weakref
from typing import Any, Iterator, List, Optional

import zmq

from ._checks import check_bool as _check_bool
from ._checks import check_int as _check_int
from ._checks import check_serializer as _check_serializer
from ._progress import ProgressBar as _ProgressBar
from ._remote_parts import (
    _MARKER,
    _NATIVE,
    _PICKLE,
    _PICKLE_PROTOCOLS,
    _POLL_MS,
    _PROTOCOL,
    _SERIALIZER,
    _attach,
    _check_address,
    _check_seconds,
    _close_sender,
    _codec_of,
    _Endpoints,
    _Sender,
)
from ._transport import DATA, decode
from .base import DataFlow, DataFlowReentrantGuard, Datapoint, UnknownLengthError
from .serialize import MsgpackSerializer, PickleSerializer, Serializer

__all__ = ["RemoteDataZMQ", "send_dataflow_zmq"]

_log = logging.getLogger(__name__)

# ---- the sending side --------------------------------------------------------------


def send_dataflow_zmq(
    df: DataFlow,
    addr: str,
    hwm: int = 50,
    format: Optional[str] = None,
    bind: bool = False,
    *,
    serializer: Optional[Serializer] = None,
    linger: float = 30.0,
) -> int:
    """Reset *df*, send each of its datapoints to *addr*, and return how many were sent.

    The datapoints go out over a ZeroMQ PUSH socket that connects to *addr*
    (or binds it, with *bind*), for a :class:`RemoteDataZMQ` to receive.
    A progress bar on standard error shows the count and the speed. The
    call returns when one pass of *df* has ended; to send forever, as
    tensorpack's version did, send ``RepeatedData(df, -1)`` (a dataflow
    that never ends makes the call run until interrupted). *df* is reset at
    the start and closed at the end, whatever happens.

    Datapoints are encoded as in :class:`MultiProcessRunnerZMQ`: msgpack,
    with numpy arrays of 64 KiB or more as raw frames beside the message,
    and small datapoints several to a message; a datapoint waits at most a
    few milliseconds for others to join it, whatever *df* does next (a
    helper thread sends it while *df* blocks or computes). Each array is
    copied once when its message is queued, so *df* may reuse its buffers. Sending
    blocks while *hwm* messages wait (the receiver is slow, or not there
    yet; the bar then says it is waiting), so a sender started before its
    receiver simply waits for it.

    On return, the last messages may still be on their way: closing waits
    up to *linger* seconds for them to be delivered, then drops them with a
    ``RuntimeWarning``. On an exception or Ctrl-C it drops them at once and
    re-raises. Either way the socket and its ZeroMQ context are closed and
    nothing is left running. The receiver is not told that a sender
    stopped: it waits for more (see its *timeout*).

    Args:
        df: the dataflow to send.
        addr: the ZeroMQ endpoint, e.g. ``'tcp://10.0.0.1:8877'`` (the
            receiver's address) or ``'tcp://*:8877'`` with *bind*.
        hwm: ZeroMQ high-water mark: how many messages may wait to be sent
            before sending blocks, >= 1 (default 50).
        format: ``None`` or ``'msgpack'`` (the default: msgpack with
            arrays as raw frames), or ``'pickle'`` for Python objects
            msgpack cannot store; the receiver must then allow pickle.
        bind: bind *addr* instead of connecting to it (the receiver then
            connects: ``RemoteDataZMQ(addr, bind=False)``).
        serializer: a :class:`~dataflow.serialize.Serializer` that encodes
            each datapoint instead of the built-in encoding (pass the same
            one to the receiver); not together with *format*.
        linger: how many seconds closing may wait to deliver the last
            messages after a complete pass, >= 0 (default 30).

    Returns:
        The number of datapoints sent.

    Example:
        >>> import threading
        >>> receiver = RemoteDataZMQ("tcp://127.0.0.1:*", timeout=30)
        >>> receiver.reset_state()  # binds; '*' lets the system pick a free port
        >>> source = DataFromList([[i, np.full(2, i)] for i in range(3)], shuffle=False)
        >>> sender = threading.Thread(
        ...     target=send_dataflow_zmq, args=(source, receiver.endpoints[0]))
        >>> sender.start()
        >>> stream = iter(receiver)
        >>> [next(stream) for _ in range(3)]
        [[0, array([0, 0])], [1, array([1, 1])], [2, array([2, 2])]]
        >>> sender.join()
        >>> receiver.close()
    """
    if not isinstance(df, DataFlow):
        kind = type(df)
        name = kind.__qualname__
        if kind.__module__ != "builtins":  # e.g. a tensorpack DataFlow of the same name
            name = f"{kind.__module__}.{name}"
        raise TypeError(f"df must be a dataflow.DataFlow, got {name}")
    addr = _check_address("addr", addr)
    hwm = _check_int("hwm", hwm, 1, "a positive int")
    codec, serializer = _codec_of(format, serializer)
    bind = _check_bool("bind", bind)
    linger = _check_seconds("linger", linger, allow_zero=True)

    ctx = zmq.Context()
    sock: Optional[zmq.Socket] = None
    finished = False
    try:
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, hwm)
        _attach(sock, addr, bind, "send_dataflow_zmq")
        df.reset_state()
        _log.info("send_dataflow_zmq: sending %s to %s", type(df).__name__, addr)
        count = _send_all(df, sock, addr, codec, serializer)
        finished = True
        _log.info("send_dataflow_zmq: sent %d datapoints to %s", count, addr)
        return count
    finally:
        try:
            df.close()
        finally:
            _close_sender(ctx, sock, addr, linger if finished else 0.0)


def _send_all(
    df: DataFlow, sock: zmq.Socket, addr: str, codec: int, serializer: Optional[Serializer]
) -> int:
    """Send every datapoint of one pass of *df*; the number sent."""
    try:
        total: Optional[int] = len(df)
    except UnknownLengthError:
        total = None
    count = 0
    desc = f"send_dataflow_zmq to {addr}"
    with _ProgressBar(total=total, desc=desc, unit="dp", leave=True) as bar:
        sender = _Sender(sock, codec, serializer, bar)
        try:
            for dp in df:
                sender.put(dp)
                count += 1
                bar.update(1)
            sender.flush()
        finally:
            sender.stop_flusher()
    return count


# ---- the receiving side ------------------------------------------------------------


class RemoteDataZMQ(DataFlow):
    """Yield, forever, the datapoints that senders push to one or two ZeroMQ endpoints.

    The receiving end of :func:`send_dataflow_zmq`: each of *addr1* and
    *addr2* gets a PULL socket, bound by default (any number of senders
    connect to it), or connected to a sender that binds. Datapoints arrive
    as the senders sent them (tuples as lists, arrays writable), in the
    order each sender sent them, interleaved across senders. The stream
    never ends, and ``len()`` raises :class:`UnknownLengthError`. The
    attributes ``cnt1`` and ``cnt2`` count the datapoints received on each
    endpoint since ``reset_state()``.

    ``reset_state()`` binds or connects the sockets, so senders may start
    before the loop does, and an address that is taken fails there; they
    stay open across loops, so leaving a loop early (``break``) loses
    nothing, until ``close()`` (or ``with``, or garbage collection). A loop
    that finds them closed (no ``reset_state()``, or after ``close()``)
    opens them itself and closes them when it ends, as tensorpack did.
    Memory: up to *hwm* messages queued per socket.

    It also receives what tensorpack 0.11's ``send_dataflow_zmq`` sends:
    msgpack (its ``TENSORPACK_SERIALIZE=msgpack``) always, and pickle (its
    default) only with *allow_pickle*, since unpickling runs code chosen by
    the sender.

    Args:
        addr1: the endpoint, e.g. ``'tcp://*:8877'`` (bind every
            interface), ``'tcp://127.0.0.1:*'`` (a free port, see
            :attr:`endpoints`), ``'ipc:///tmp/feed'``.
        addr2: a second endpoint, or ``None``; e.g. IPC for senders on the
            same machine and TCP for the others.
        hwm: ZeroMQ high-water mark: how many messages may wait in each
            socket's queue before senders block, >= 1 (default 50).
        bind: bind the endpoints (default) rather than connect to them.
        timeout: seconds to wait for the next datapoint before raising
            ``TimeoutError``, or ``None`` (default) to wait forever, as
            tensorpack did. A sender that fails or stops sends nothing
            more, so without a timeout the loop waits.
        serializer: the :class:`~dataflow.serialize.Serializer` the senders
            passed as ``serializer=``; a ``PickleSerializer`` also allows
            pickle.
        allow_pickle: decode pickled datapoints (``format='pickle'``, or
            tensorpack's default); only for senders you trust.

    Raises:
        TimeoutError: while iterating, nothing arrived for *timeout* seconds.
        ValueError: while iterating, a message holds pickle and pickle is
            not allowed, or holds datapoints encoded by a serializer that
            was not given.
        RuntimeError: while iterating, a message cannot be decoded.

    Example:
        >>> import threading
        >>> with RemoteDataZMQ("tcp://127.0.0.1:*", timeout=30) as df:
        ...     df.reset_state()
        ...     sender = threading.Thread(target=send_dataflow_zmq, args=(
        ...         DataFromList([{"x": i} for i in range(4)], shuffle=False), df.endpoints[0]))
        ...     sender.start()
        ...     received = [dp["x"] for _, dp in zip(range(4), df)]
        ...     sender.join()
        >>> received, df.cnt1
        ([0, 1, 2, 3], 4)

    Note:
        Once the senders have stopped, the loop waits for more forever
        unless *timeout* is set: with ``timeout=60``, a ``TimeoutError``
        names the endpoints and says what to check.
    """

    def __init__(
        self,
        addr1: str,
        addr2: Optional[str] = None,
        hwm: int = 50,
        bind: bool = True,
        *,
        timeout: Optional[float] = None,
        serializer: Optional[Serializer] = None,
        allow_pickle: bool = False,
    ) -> None:
        self._addrs = [_check_address("addr1", addr1)]
        if addr2 is not None:
            self._addrs.append(_check_address("addr2", addr2))
        self._hwm = _check_int("hwm", hwm, 1, "a positive int")
        self._bind = _check_bool("bind", bind)
        if timeout is not None:
            timeout = _check_seconds("timeout", timeout, allow_zero=False)
            if math.isinf(timeout):
                timeout = None
        self._timeout: Optional[float] = timeout
        self._serializer = _check_serializer(serializer)
        self._allow_pickle = _check_bool("allow_pickle", allow_pickle) or isinstance(
            self._serializer, PickleSerializer
        )
        self._guard = DataFlowReentrantGuard("RemoteDataZMQ")
        self._ends: Optional[_Endpoints] = None
        self._finalizer: Optional[weakref.finalize] = None
        self.cnt1 = 0
        self.cnt2 = 0

    def __repr__(self) -> str:
        addrs = ", ".join(repr(a) for a in self._addrs)
        return f"RemoteDataZMQ({addrs}, bind={self._bind})"

    @property
    def endpoints(self) -> List[str]:
        """The endpoints of the open sockets, a ``*`` port resolved (after ``reset_state()``)."""
        if self._ends is None:
            raise RuntimeError(
                "RemoteDataZMQ.endpoints: the sockets are not open; call reset_state() first"
            )
        return list(self._ends.names)

    def reset_state(self) -> None:
        """Bind or connect the sockets (unless open) and zero ``cnt1`` and ``cnt2``."""
        self.cnt1 = self.cnt2 = 0
        if self._ends is None:
            self._open()

    def close(self) -> None:
        """Close the sockets and their ZeroMQ context; queued datapoints are dropped."""
        ends, self._ends = self._ends, None
        if ends is not None:
            self._release(ends)

    def __len__(self) -> int:
        raise UnknownLengthError(
            "RemoteDataZMQ yields what its senders send, forever: it has no length"
        )

    def __iter__(self) -> Iterator[Datapoint]:
        with self._guard:
            ends = self._ends
            own = ends is None
            if ends is None:
                ends = self._open()
            try:
                yield from self._receive(ends)
            finally:
                if own and self._ends is ends:
                    self.close()

    # -- internals --------------------------------------------------------------------

    def _open(self) -> _Endpoints:
        ends = _Endpoints(self._addrs, self._hwm, self._bind)
        self._ends = ends
        self._finalizer = weakref.finalize(self, ends.close)
        return ends

    def _release(self, ends: _Endpoints) -> None:
        finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None and finalizer.alive:
            finalizer()
        ends.close()

    def _receive(self, ends: _Endpoints) -> Iterator[Datapoint]:
        buffer = ends.buffer
        timeout = self._timeout
        while True:
            while buffer:
                yield buffer.popleft()
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                if ends.closed:
                    raise RuntimeError(
                        "RemoteDataZMQ was closed while a loop over it was running; close it "
                        "after the loop"
                    )
                wait_ms = _POLL_MS
                if deadline is not None:
                    wait_ms = max(0, min(wait_ms, math.ceil((deadline - time.monotonic()) * 1000)))
                events = ends.poller.poll(wait_ms)
                if events:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise self._timeout_error(ends)
            for sock, _ in events:
                index = ends.index[sock]
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    continue
                items = self._decode(frames, ends.names[index])
                buffer.extend(items)
                if index == 0:
                    self.cnt1 += len(items)
                else:
                    self.cnt2 += len(items)

    def _timeout_error(self, ends: _Endpoints) -> TimeoutError:
        where = " or ".join(repr(name) for name in ends.names)
        role = "connects to" if self._bind else "binds"
        return TimeoutError(
            f"RemoteDataZMQ received nothing on {where} for {self._timeout:g} s; check that a "
            f"sender (send_dataflow_zmq) is running and {role} that address, that it has not "
            "ended or failed (see its output), and that no firewall blocks the port"
        )

    def _decode(self, frames: List[Any], name: str) -> List[Datapoint]:
        """The datapoints of one message received on *name*."""
        head = frames[0].buffer
        if len(frames) == 1 and (len(head) == 0 or head[0] != DATA):
            return [self._decode_tensorpack(frames[0].bytes, name)]
        try:
            kind, marker, protocol, payload = decode(frames, None)
        except Exception as err:
            raise self._undecodable(name, err) from err
        if kind != DATA or marker & 0xFF00 != _MARKER or protocol != _PROTOCOL:
            raise RuntimeError(
                f"RemoteDataZMQ received a message on {name!r} that send_dataflow_zmq of this "
                f"version did not send (kind {kind}, marker {marker:#06x}, protocol "
                f"{protocol}); check that only send_dataflow_zmq senders of the same dataflow "
                "version send to it"
            )
        codec = marker & 0xFF
        if codec == _NATIVE:
            return list(payload)
        if codec == _PICKLE:
            self._check_pickle(name, "the sender used format='pickle'", "")
            loads: Any = pickle.loads
        elif codec == _SERIALIZER and self._serializer is not None:
            loads = self._serializer.loads
        elif codec == _SERIALIZER:
            raise ValueError(
                f"RemoteDataZMQ received datapoints on {name!r} encoded by the sender's "
                "serializer=; pass the same serializer to RemoteDataZMQ"
            )
        else:
            raise self._undecodable(name, ValueError(f"unknown codec {codec}"))
        try:
            return [loads(buf) for buf in payload]
        except Exception as err:
            raise self._undecodable(name, err) from err

    def _decode_tensorpack(self, buf: bytes, name: str) -> Datapoint:
        """A datapoint sent by tensorpack's send_dataflow_zmq: pickle or msgpack-numpy."""
        if len(buf) > 1 and buf[0] == 0x80 and buf[1] in _PICKLE_PROTOCOLS:
            self._check_pickle(
                name,
                "tensorpack's send_dataflow_zmq pickles by default",
                " (or have the tensorpack senders use msgpack: TENSORPACK_SERIALIZE=msgpack)",
            )
            try:
                dp = pickle.loads(buf)
            except Exception as err:
                raise self._undecodable(name, err) from err
        else:  # in msgpack, 0x80 is the empty map, which is the whole message
            try:
                dp = _TENSORPACK_MSGPACK.loads(buf)
            except Exception as err:
                raise self._undecodable(name, err) from err
        return list(dp) if type(dp) is tuple else dp

    def _check_pickle(self, name: str, why: str, alternative: str) -> None:
        if not self._allow_pickle:
            raise ValueError(
                f"RemoteDataZMQ received pickled datapoints on {name!r} ({why}). Unpickling "
                "runs code chosen by the sender, so it is refused unless you trust every "
                f"sender that can reach this address and pass allow_pickle=True{alternative}"
            )

    @staticmethod
    def _undecodable(name: str, err: BaseException) -> RuntimeError:
        return RuntimeError(
            f"RemoteDataZMQ received a message on {name!r} that it cannot decode "
            f"({type(err).__name__}: {err}); check that only send_dataflow_zmq (of this "
            "library or of tensorpack) sends to it"
        )


_TENSORPACK_MSGPACK = MsgpackSerializer()
