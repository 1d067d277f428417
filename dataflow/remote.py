"""Stream datapoints from one machine to another over ZeroMQ.

:func:`send_dataflow_zmq` runs a dataflow and pushes its datapoints to a
ZeroMQ endpoint; :class:`RemoteDataZMQ` pulls them from one or two endpoints
and yields them. Either side may bind; by default the receiver binds and
any number of senders connect to it. ``python -m dataflow.serve`` and
``python -m dataflow.receive`` run the two ends from a shell.

**Messages.** The transport of the ZeroMQ dataflows
(:mod:`dataflow._transport.wire`): a multipart message whose first frame holds
a 7-byte prefix and a msgpack array, several small datapoints to a message,
with numpy arrays of 64 KiB or more as raw frames of their own. In the
prefix, the "worker" field holds ``0xDF00``, plus 16 times the protocol
version (2), plus the codec (0: the built-in msgpack encoding, 1: each
datapoint pickled, 2: each datapoint encoded by the sender's
``serializer``); the "epoch" field holds the sender's id, a random 32-bit
number. The kinds:

* ``MARK`` (the hello, and a heartbeat every second): ``[count, info,
  None]``, *info* a map with the sender's ``host``, ``pid``, ``repr`` (of its
  dataflow), ``protocol`` and ``heartbeat`` interval.
* ``DATA``: the datapoints.
* ``END``: ``[count]`` after a complete pass, ``[count, 'interrupted']``
  after Ctrl-C.
* ``ERROR``: ``[type name, message, traceback]``: the sender's dataflow raised.

Version 1 (an earlier release) had ``0xDF00`` plus the codec and the version
in the "epoch" field, and no hello; the receiver still reads its data, as
that of an anonymous sender, and the single-frame messages of tensorpack's
``send_dataflow_zmq`` (one msgpack-numpy or pickle payload per datapoint,
never starting with the ``DATA`` byte ``0x01``) too.
"""

from __future__ import annotations

import logging
import math
import os
import time
import weakref
from typing import Any, Iterator, List, Optional, Tuple, Union

import zmq

from ._checks import check_bool as _check_bool
from ._checks import check_int as _check_int
from ._checks import check_serializer as _check_serializer
from ._remote_curve import CurveClient as _CurveClient
from ._remote_curve import CurveServer as _CurveServer
from ._remote_curve import generate_keys
from ._remote_curve import warn_if_exposed as _warn_if_exposed
from ._remote_inbox import Inbox as _Inbox
from ._remote_inbox import SenderError
from ._remote_parts import (
    _HEARTBEAT_TIMEOUT_S,
    _POLL_MS,
    _check_address,
    _check_seconds,
    _close_sender,
    _codec_of,
    _Endpoints,
    _send_pass,
)
from ._remote_peers import Peers as _Peers
from ._remote_peers import PeerWarning, RemoteStats, SenderInfo
from ._transport import Limits as _Limits
from ._transport import pause_signals as _pause_signals
from .base import DataFlow, DataFlowReentrantGuard, Datapoint, UnknownLengthError
from .serialize import PickleSerializer, Serializer

__all__ = [
    "PeerWarning",
    "RemoteDataZMQ",
    "RemoteStats",
    "SenderError",
    "SenderInfo",
    "generate_keys",
    "send_dataflow_zmq",
]

KeyPair = Tuple[Union[str, "os.PathLike[str]"], Any]

_log = logging.getLogger(__name__)
# While no sender is live, the receiver warns after this long, then at doubling intervals.
_IDLE_WARN_S = 30.0
# The largest message (each frame, and all frames together) a receiver accepts by default.
_MAX_MESSAGE_BYTES = 1 << 30
_MAX_FRAMES = 1 << 16

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
    curve: Optional[KeyPair] = None,
) -> int:
    """Reset *df*, send each of its datapoints to *addr*, and return how many were sent.

    The datapoints go out over a ZeroMQ PUSH socket that connects to *addr*
    (or binds it, with *bind*), for a :class:`RemoteDataZMQ` to receive.
    A progress bar on standard error shows the count and the speed. The
    call returns when one pass of *df* has ended; to send forever, as
    tensorpack's version did, send ``RepeatedData(df, -1)`` (a dataflow
    that never ends makes the call run until interrupted). *df* is reset at
    the start and closed at the end, whatever happens.

    The sender announces itself (a random id, its host, pid and the repr of
    *df*), sends a heartbeat every second from a thread (also while *df* is
    slow to make the next datapoint), and ends with an end-of-pass message;
    if *df* raises, it sends the exception and its traceback instead, and
    on Ctrl-C it says it was interrupted. The receiver ends its pass when
    its senders have ended, names a sender whose heartbeat stopped, and
    reports a sender's error (see :class:`RemoteDataZMQ`).

    Datapoints are encoded as in :class:`MultiProcessRunnerZMQ`: msgpack,
    with numpy arrays of 64 KiB or more as raw frames beside the message,
    and small datapoints several to a message; a datapoint waits at most a
    few milliseconds for others to join it, whatever *df* does next (a
    helper thread sends it while *df* blocks or computes). Each array is
    copied once when its message is queued, so *df* may reuse its buffers.
    Sending blocks while *hwm* messages wait (the receiver is slow, or not
    there yet; the bar then says it is waiting), so a sender started before
    its receiver simply waits for it.

    On return, the last messages may still be on their way: closing waits
    up to *linger* seconds for them to be delivered, then drops them with a
    ``RuntimeWarning``. On an exception it waits up to 5 seconds to deliver
    the error report and re-raises; on Ctrl-C it stops at once. Either way
    the socket, its threads and its ZeroMQ context are closed and nothing is
    left running.

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
        curve: ``(secret key file, receiver's public key file)`` to
            authenticate to a receiver that has CURVE keys and encrypt the
            stream: this sender's ``.key_secret`` file and the receiver's
            ``.key`` file (see :func:`generate_keys`). ``None`` (default):
            plain text.

    Returns:
        The number of datapoints sent.

    Raises:
        PermissionError: the receiver refused the connection: it does not allow
            this sender's CURVE key, or it expects keys this sender does not use
            (or the other way round). Without the check the sender would wait
            for it forever.

    Example:
        >>> import threading
        >>> receiver = RemoteDataZMQ("tcp://127.0.0.1:*", timeout=30)
        >>> receiver.reset_state()  # binds; '*' lets the system pick a free port
        >>> source = DataFromList([[i, np.full(2, i)] for i in range(3)], shuffle=False)
        >>> sender = threading.Thread(
        ...     target=send_dataflow_zmq, args=(source, receiver.endpoints[0]))
        >>> sender.start()
        >>> list(receiver)  # the pass ends when the sender has finished
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
    keys = None if curve is None else _CurveClient.parse(curve, "send_dataflow_zmq")
    if bind and keys is None:
        _warn_if_exposed([addr], "send_dataflow_zmq", "can connect and read the datapoints")

    ctx = zmq.Context()
    sock: Optional[zmq.Socket] = None
    close_linger: List[Any] = [0.0, False]  # [seconds, warn], set by _send_pass
    try:
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, hwm)
        if keys is not None:
            keys.apply(sock)
        _log.info("send_dataflow_zmq: sending %s to %s", type(df).__name__, addr)
        count = _send_pass(df, sock, addr, bind, codec, serializer, (linger, close_linger))
        _log.info("send_dataflow_zmq: sent %d datapoints to %s", count, addr)
        return count
    finally:
        try:
            df.close()
        finally:
            _close_sender(ctx, sock, addr, *close_linger)


# ---- the receiving side ------------------------------------------------------------


class RemoteDataZMQ(DataFlow):
    """Yield the datapoints that senders push to one or two ZeroMQ endpoints, pass by pass.

    The receiving end of :func:`send_dataflow_zmq`: each of *addr1* and
    *addr2* gets a PULL socket, bound by default (any number of senders
    connect to it), or connected to a sender that binds. Datapoints arrive
    as the senders sent them (tuples as lists, arrays writable), in the
    order each sender sent them, interleaved across senders.

    **Passes.** Senders announce themselves, send a heartbeat every second
    and an end-of-pass message. A pass (one loop) ends when at least
    *min_senders* senders were seen in it and every one of them has
    finished, failed, was interrupted or went silent; with *keep_waiting*
    it never ends, and new senders are welcome at any time. Senders still
    live at the end of a pass carry over to the next one. ``len()`` raises
    :class:`UnknownLengthError`.

    **Senders that stop.** A sender whose heartbeat stops for
    *heartbeat_timeout* seconds (killed, or cut off) is named in a
    :class:`PeerWarning` and the loop goes on with the others; a sender
    whose dataflow raised is named with its exception and traceback, in a
    :class:`PeerWarning` (by default) or a :class:`SenderError` (with
    ``on_error='raise'``). While no sender is live the loop waits, and says
    so in a :class:`PeerWarning` after 30 s and at doubling intervals after.

    **Untrusted peers.** A message that is malformed, truncated, larger than
    *max_message_bytes*, nested too deep, foreign, or that this receiver may
    not decode (pickle without *allow_pickle*) is dropped, counted in
    :attr:`stats` (``.dropped``) and named in a :class:`PeerWarning` (at most
    one per peer and kind of problem every 10 s); the other senders' stream
    goes on. Decoding never allocates much more than a message's own size.
    With *curve* keys, only the allowed senders can connect at all, and the
    stream is encrypted; without them, binding an address other than
    loopback or ``ipc://`` warns once that anyone who can reach it can send.

    **Senders without the protocol** (tensorpack 0.11's
    ``send_dataflow_zmq``, or this library's before the protocol had a hello)
    are admitted as anonymous peers unless *allow_anonymous* is false: their
    datapoints are yielded, but they have no liveness, so they never end a
    pass. Tensorpack's msgpack (``TENSORPACK_SERIALIZE=msgpack``) is read
    always, its pickle (its default) only with *allow_pickle*, since
    unpickling runs code chosen by the sender.

    ``reset_state()`` binds or connects the sockets, so senders may start
    before the loop does, and an address that is taken fails there; they
    stay open across loops, so leaving a loop early (``break``) loses
    nothing, until ``close()`` (or ``with``, or garbage collection). A loop
    that finds them closed (no ``reset_state()``, or after ``close()``)
    opens them itself and closes them when it ends, as tensorpack did.
    The attributes ``cnt1`` and ``cnt2`` count the datapoints received on
    each endpoint since ``reset_state()``. Memory: up to *hwm* messages
    queued per socket.

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
            ``TimeoutError`` (heartbeats do not count), or ``None``
            (default) to wait as long as it takes.
        serializer: the :class:`~dataflow.serialize.Serializer` the senders
            passed as ``serializer=``; a ``PickleSerializer`` also allows
            pickle.
        allow_pickle: decode pickled datapoints (``format='pickle'``, or
            tensorpack's default); only for senders you trust.
        min_senders: how many senders a pass waits to see before it may
            end, >= 1 (default 1). With several senders that start at
            about the same time, pass their number, so that the first one
            to finish does not end the pass before the others said hello.
        keep_waiting: never end a pass; wait for new senders once all have
            ended (default ``False``).
        heartbeat_timeout: seconds without a message after which a sender
            is taken as gone, > 1 (default 10). Time counts only while the
            loop waits for data, not while your code holds a datapoint.
        on_error: ``'warn'`` (default): a sender's error is a
            :class:`PeerWarning` and the loop goes on with the others (a
            peer without keys cannot stop it); ``'raise'``: it is a
            :class:`SenderError`.
        allow_anonymous: admit senders without the protocol (tensorpack's);
            ``False`` drops their messages (default ``True``).
        max_message_bytes: the largest message accepted, in bytes (default
            1 GiB). ZeroMQ disconnects a peer that sends a larger frame.
        curve: ``(secret key file, allowed)``: this receiver's
            ``.key_secret`` file and the senders' public ``.key`` files (a
            file, a directory of them, or a list) that may connect (see
            :func:`generate_keys`). ``None`` (default): no authentication.

    Raises:
        TimeoutError: while iterating, no datapoint arrived for *timeout* seconds.
        SenderError: while iterating with ``on_error='raise'``, a sender's
            dataflow raised.

    Example:
        >>> import threading
        >>> with RemoteDataZMQ("tcp://127.0.0.1:*", timeout=30) as df:
        ...     df.reset_state()
        ...     sender = threading.Thread(target=send_dataflow_zmq, args=(
        ...         DataFromList([{"x": i} for i in range(4)], shuffle=False), df.endpoints[0]))
        ...     sender.start()
        ...     received = [dp["x"] for dp in df]  # ends when the sender has finished
        ...     sender.join()
        >>> received, df.cnt1, df.stats.dropped
        ([0, 1, 2, 3], 4, 0)

    Note:
        Without *timeout* and with *keep_waiting*, or with senders that
        send forever, the loop does not end by itself: stop it when you
        are done (``break``), or pass ``timeout=`` to get a
        ``TimeoutError`` once no datapoint arrives.
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
        min_senders: int = 1,
        keep_waiting: bool = False,
        heartbeat_timeout: float = _HEARTBEAT_TIMEOUT_S,
        on_error: str = "warn",
        allow_anonymous: bool = True,
        max_message_bytes: int = _MAX_MESSAGE_BYTES,
        curve: Optional[KeyPair] = None,
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
        self._min_senders = _check_int("min_senders", min_senders, 1, "a positive int")
        self._keep_waiting = _check_bool("keep_waiting", keep_waiting)
        heartbeat_timeout = _check_seconds("heartbeat_timeout", heartbeat_timeout, False)
        if not 1.0 < heartbeat_timeout < math.inf:
            raise ValueError(
                "heartbeat_timeout must be a finite number of seconds above 1 (the senders' "
                f"heartbeat interval), got {heartbeat_timeout!r}"
            )
        if on_error not in ("warn", "raise"):
            raise ValueError(f"on_error must be 'warn' or 'raise', got {on_error!r}")
        allow_anonymous = _check_bool("allow_anonymous", allow_anonymous)
        max_bytes = _check_int("max_message_bytes", max_message_bytes, 1024, "an int >= 1024")
        self._limits = _Limits(max_bytes, _MAX_FRAMES)
        self._curve = None if curve is None else _CurveServer.parse(curve, "RemoteDataZMQ")
        self._peers = _Peers(heartbeat_timeout)
        self._inbox = _Inbox(
            self._peers,
            self._limits,
            self._serializer,
            self._allow_pickle,
            allow_anonymous,
            on_error,
        )
        self._pass_done = False
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

    @property
    def stats(self) -> RemoteStats:
        """A snapshot of the counters: datapoints and bytes received, messages dropped,
        connections refused, and the senders of the current pass (:class:`SenderInfo`)."""
        ends = self._ends
        return self._peers.stats(0 if ends is None else ends.refused)

    def reset_state(self) -> None:
        """Bind or connect the sockets (unless open) and zero the counters."""
        self.cnt1 = self.cnt2 = 0
        peers = self._peers
        peers.received = peers.bytes = peers.dropped = 0
        if self._ends is None:
            self._open()

    def close(self) -> None:
        """Close the sockets, the authenticator and the ZeroMQ context; queued
        datapoints are dropped."""
        ends, self._ends = self._ends, None
        if ends is not None:
            self._release(ends)

    def __len__(self) -> int:
        raise UnknownLengthError("RemoteDataZMQ yields what its senders send: it has no length")

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
        if self._bind and self._curve is None:
            _warn_if_exposed(self._addrs, "RemoteDataZMQ", "can send it datapoints")
        ends = _Endpoints(self._addrs, self._hwm, self._bind, self._limits, self._curve)
        self._ends = ends
        self._finalizer = weakref.finalize(self, ends.close)
        return ends

    def _release(self, ends: _Endpoints) -> None:
        finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None and finalizer.alive:
            finalizer()
        ends.close()

    def _receive(self, ends: _Endpoints) -> Iterator[Datapoint]:
        peers = self._peers
        clock = peers.clock
        if self._pass_done:
            peers.new_pass()
            self._pass_done = False
        clock.resume()
        try:
            yield from self._receive_pass(ends, peers)
        finally:
            clock.pause()

    def _receive_pass(self, ends: _Endpoints, peers: _Peers) -> Iterator[Datapoint]:
        buffer = ends.buffer
        clock = peers.clock
        read = self._inbox.read
        timeout = self._timeout
        min_senders = self._min_senders
        ending = not self._keep_waiting
        while True:
            if buffer:
                clock.pause()  # the loop's own time does not count against the senders
                while buffer:
                    yield buffer.popleft()
                clock.resume()
            deadline = None if timeout is None else time.monotonic() + timeout
            while not buffer:
                if ending and peers.pass_over(min_senders):
                    self._pass_done = True
                    return
                events = self._wait(ends, peers, deadline)
                for sock, _ in events:
                    index = ends.index[sock]
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        continue
                    items = read(frames, ends.names[index])
                    if items:
                        buffer.extend(items)
                        if index == 0:
                            self.cnt1 += len(items)
                        else:
                            self.cnt2 += len(items)

    def _wait(self, ends: _Endpoints, peers: _Peers, deadline: Optional[float]) -> Any:
        """The poller's events, once there are some; checks liveness while it waits."""
        while True:
            if ends.closed:
                raise RuntimeError(
                    "RemoteDataZMQ was closed while a loop over it was running; close it "
                    "after the loop"
                )
            wait_ms = _POLL_MS
            if deadline is not None:
                wait_ms = max(0, min(wait_ms, math.ceil((deadline - time.monotonic()) * 1000)))
            resume = _pause_signals()
            try:
                events = ends.poller.poll(wait_ms)
            finally:
                if resume is not None:
                    resume()
            peers.check(ends.names, _IDLE_WARN_S)
            if events:
                return events
            if deadline is not None and time.monotonic() >= deadline:
                raise self._timeout_error(ends)
            if not self._keep_waiting and peers.pass_over(self._min_senders):
                return []

    def _timeout_error(self, ends: _Endpoints) -> TimeoutError:
        where = " or ".join(repr(name) for name in ends.names)
        role = "connects to" if self._bind else "binds"
        senders = self._peers.by_id.values()
        known = (
            "; senders: " + ", ".join(f"{p.name()} ({p.state})" for p in senders)
            if senders
            else "; no sender has announced itself"
        )
        return TimeoutError(
            f"RemoteDataZMQ received no datapoint on {where} for {self._timeout:g} s{known}. "
            f"Check that a sender (send_dataflow_zmq) is running and {role} that address, "
            "that it has not ended or failed (see its output), and that no firewall blocks "
            "the port"
        )
