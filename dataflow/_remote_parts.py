"""The parts of :mod:`dataflow.remote` that are not its public classes: argument
checks, the codecs of its messages, the batching sender, and the receiving sockets."""

from __future__ import annotations

import math
import os
import pickle
import secrets
import socket
import threading
import time
import traceback
import warnings
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

import zmq

from ._checks import check_serializer as _check_serializer
from ._progress import ProgressBar
from ._remote_curve import CurveServer, start_authenticator
from ._transport import (
    BatchSender,
    ItemPacker,
    Limits,
    encode_end,
    encode_mark,
    encode_report,
    send_frames,
)
from .base import DataFlow, Datapoint, UnknownLengthError
from .serialize import PickleSerializer, Serializer

# The "worker" field of a message: this marker, the protocol version times 16 (0 for
# version 1, which had the version in the "epoch" field), and the codec of its datapoints.
_MARKER = 0xDF00
_NATIVE, _PICKLE, _SERIALIZER = 0, 1, 2
_PROTOCOL = 2
_VERSION_BITS = _PROTOCOL << 4
# Version 1 put the version in the "epoch" field; version 2 puts the sender's id there.
_PROTOCOL_V1 = 1
# A sender's heartbeat interval, and how long a receiver waits by default before it
# takes a sender whose heartbeat stopped as gone.
_HEARTBEAT_S = 1.0
_HEARTBEAT_TIMEOUT_S = 10.0
# How long a sender waits to deliver its error report before it exits.
_REPORT_LINGER_S = 3.0
# The monitor events of a handshake: it succeeded, or the receiver refused it.
_HANDSHAKE_EVENTS = int(
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
# How long an interrupted sender tries to deliver the news.
_INTERRUPT_LINGER_S = 0.5
# Every wait polls in slices this long, so that Ctrl-C is seen promptly.
_POLL_MS = 100
# After this long blocked at the high-water mark, the progress bar says so.
_BLOCKED_NOTE_S = 1.0
# The pickle protocols whose pickles start with the PROTO opcode 0x80.
_PICKLE_PROTOCOLS = range(2, pickle.HIGHEST_PROTOCOL + 1)

_ENDPOINT_EXAMPLE = "a ZeroMQ endpoint string such as 'tcp://10.0.0.1:8877' or 'ipc:///tmp/feed'"


# ---- argument checks ---------------------------------------------------------------


def _check_address(name: str, addr: Any) -> str:
    if not isinstance(addr, str):
        raise TypeError(f"{name} must be {_ENDPOINT_EXAMPLE}, got {addr!r}")
    if "://" not in addr:
        raise ValueError(f"{name} must be {_ENDPOINT_EXAMPLE}, got {addr!r}")
    if addr.startswith("inproc://"):
        raise ValueError(
            f"{name} must be an endpoint that other processes can reach, such as tcp:// or "
            f"ipc:// (inproc:// only joins sockets of one ZeroMQ context), got {addr!r}"
        )
    return addr


def _check_seconds(name: str, value: Any, allow_zero: bool) -> float:
    constraint = (
        "a non-negative number of seconds" if allow_zero else "None or a positive number of seconds"
    )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be {constraint}, got {value!r}")
    if math.isnan(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {constraint}, got {value!r}")
    if allow_zero and math.isinf(value):  # a linger: bounded
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    return float(value)


def _codec_of(format: Any, serializer: Any) -> Tuple[int, Optional[Serializer]]:
    """The codec number and serializer that *format* or *serializer* selects."""
    if format is not None:
        constraint = (
            "None, 'msgpack' or 'pickle' (tensorpack's 'zmq_ops' format, read by its "
            "TensorFlow op, is not supported)"
        )
        if not isinstance(format, str):
            raise TypeError(f"format must be {constraint}, got {format!r}")
        if format not in ("msgpack", "pickle"):
            raise ValueError(f"format must be {constraint}, got {format!r}")
        if serializer is not None:
            raise ValueError(
                f"serializer must be None when format={format!r} is given, got {serializer!r}"
            )
        return (_PICKLE, PickleSerializer()) if format == "pickle" else (_NATIVE, None)
    serializer = _check_serializer(serializer)
    if serializer is None:
        return _NATIVE, None
    if type(serializer) is PickleSerializer:
        return _PICKLE, serializer
    return _SERIALIZER, serializer


def _attach(sock: zmq.Socket, addr: str, bind: bool, owner: str) -> None:
    """Bind or connect *sock*; a failure is an ``OSError`` naming *owner* and *addr*."""
    try:
        if bind:
            sock.bind(addr)
        else:
            sock.connect(addr)
    except zmq.ZMQError as err:
        verb = "bind" if bind else "connect to"
        hint = ""
        if err.errno == zmq.EADDRINUSE:
            hint = "; another process (or another socket of this one) is bound there"
        elif err.errno in (zmq.EINVAL, zmq.EPROTONOSUPPORT):
            hint = f"; expected {_ENDPOINT_EXAMPLE}"
        raise OSError(err.errno, f"{owner} cannot {verb} {addr!r}: {err.strerror}{hint}") from err


# ---- sending ---------------------------------------------------------------------


def new_sender_id() -> int:
    """A random id for a sender: 32 bits, never 0 or the version-1 protocol number."""
    while True:
        sender_id = secrets.randbits(32)
        if sender_id > _PROTOCOL_V1:
            return sender_id


class _Sender(BatchSender):
    """Batches datapoints by the rule of the parallel dataflows' workers; a flusher
    thread sends a batch that would otherwise wait for the next datapoint, and a
    heartbeat thread tells the receiver once a second that this sender is alive.

    The first message, and every heartbeat, is a ``MARK`` whose state is the
    sender's *info* (host, pid, the dataflow's repr): the receiver learns who
    sends even if it connects late. Every message carries the sender's id in
    its "epoch" field.
    """

    copy = True  # see _send

    def __init__(
        self,
        sock: zmq.Socket,
        codec: int,
        serializer: Optional[Serializer],
        bar: Any,
        info: Dict[str, Any],
    ):
        super().__init__(
            sock,
            _MARKER | _VERSION_BITS | codec,
            new_sender_id(),
            ItemPacker("send_dataflow_zmq", serializer),
        )
        self.bar = bar
        self.info = info
        self.count = 0  # datapoints handed to put() so far, for the heartbeats
        self._greeted = False
        self._beat_stop = threading.Event()
        self._beat: Optional[threading.Thread] = None
        # Handshake failures (a receiver that refuses this sender's key, or expects
        # keys it does not have) would otherwise leave the sender waiting forever.
        self.addr = ""
        self.monitor: Optional[zmq.Socket] = sock.get_monitor_socket(_HANDSHAKE_EVENTS)
        self.admitted = False

    def check_refused(self, wait_ms: int = 0) -> None:
        """Raise ``PermissionError`` if the receiver refused the handshake; note a
        handshake that succeeded (in ``self.admitted``)."""
        monitor = self.monitor
        if monitor is None:
            return
        from zmq.utils.monitor import recv_monitor_message

        while monitor.poll(wait_ms):
            wait_ms = 0
            event = recv_monitor_message(monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.admitted = True
            else:
                self._refused(event)

    def wait_admitted(self, wait_s: float) -> bool:
        """Wait up to *wait_s* for a handshake with the receiver; whether there was one."""
        deadline = time.monotonic() + wait_s
        while not self.admitted and self.monitor is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.check_refused(min(_POLL_MS, max(1, int(left * 1000))))
        return True

    def _refused(self, event: int) -> None:
        why = (
            "does not allow this sender's CURVE key"
            if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH
            else "expects other security (CURVE keys on one side only, or the wrong "
            "receiver's public key)"
        )
        raise PermissionError(
            f"send_dataflow_zmq: the receiver at {self.addr!r} refused the connection: it {why}. "
            "Pass curve=(this sender's .key_secret, the receiver's .key) and add this "
            "sender's .key to the receiver's allowed keys"
        )

    def close_monitor(self) -> None:
        monitor, self.monitor = self.monitor, None
        if monitor is not None:
            try:
                self.sock.disable_monitor()
            finally:
                monitor.close(linger=0)

    def _heartbeat(self) -> List[Any]:
        return encode_mark(self.index, self.epoch, self.count, self.info, None)

    def _send(self, frames: List[Any]) -> None:
        if not self._greeted:  # under the lock, as every send
            _send(self.sock, self._heartbeat(), self.bar, self.check_refused)
            self._greeted = True
        _send(self.sock, frames, self.bar, self.check_refused)

    def start_heartbeat(self) -> None:
        """Greet the receiver if it can take it now, and start the heartbeat thread."""
        self._beat_once()
        thread = threading.Thread(
            target=self._run_heartbeat, name="dataflow-remote-heartbeat", daemon=True
        )
        thread.start()
        self._beat = thread

    def _run_heartbeat(self) -> None:
        while not self._beat_stop.wait(_HEARTBEAT_S):
            self._beat_once()

    def _beat_once(self) -> None:
        # Never waits: when the main thread holds the lock, it is sending (or blocked
        # at the high-water mark, with messages queued that show this sender is alive).
        if not self._lock.acquire(timeout=0.05):
            return
        try:
            send_frames(self.sock, self._heartbeat(), True)
            self._greeted = True
        except zmq.ZMQError:  # the queue is full (zmq.Again) or the socket is closing
            pass
        finally:
            self._lock.release()

    def stop_heartbeat(self) -> None:
        self._beat_stop.set()
        thread, self._beat = self._beat, None
        if thread is not None:
            thread.join(5.0)

    def send_end(self, count: int, wait_s: float) -> bool:
        """Send what is batched, then the end of the pass, waiting at most *wait_s*
        for room in the queue (a bound socket with no receiver has none); whether
        it was queued."""
        with self._lock:
            self._flush_locked()
            frames = encode_end(self.index, self.epoch, count)
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    send_frames(self.sock, frames, True)
                    return True
                except zmq.Again:
                    pass
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.check_refused()
                self.sock.poll(min(_POLL_MS, max(1, int(left * 1000))), zmq.POLLOUT)

    def try_send(self, frames: List[Any]) -> bool:
        """Queue *frames* if that can be done at once; whether it was."""
        if not self._lock.acquire(timeout=1.0):
            return False
        try:
            send_frames(self.sock, frames, True)
            return True
        except zmq.ZMQError:
            return False
        finally:
            self._lock.release()


def sender_info(df: Any) -> Dict[str, Any]:
    """What a sender tells the receiver about itself."""
    try:
        description = repr(df)
    except Exception as err:  # a broken __repr__ must not stop the sending
        description = f"<{type(df).__name__}: repr failed: {type(err).__name__}>"
    if len(description) > 200:
        description = description[:197] + "..."
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "repr": description,
        "protocol": _PROTOCOL,
        "heartbeat": _HEARTBEAT_S,
    }


def _send_pass(
    df: DataFlow,
    sock: zmq.Socket,
    addr: str,
    bind: bool,
    codec: int,
    serializer: Optional[Serializer],
    lingers: Tuple[float, List[Any]],
) -> int:
    """Attach *sock* to *addr* (watching its handshakes from before), reset *df* and
    send one pass of it with hello, heartbeats and an end (or an error report);
    the number sent. Sets ``lingers[1]`` to ``[seconds, warn]``:
    how long closing may wait to deliver (*lingers[0]* after a complete pass), and
    whether to warn if it gives up (only after a complete pass)."""
    linger, close_linger = lingers
    desc = f"send_dataflow_zmq to {addr}"
    with ProgressBar(total=None, desc=desc, unit="dp", leave=True) as bar:
        sender = _Sender(sock, codec, serializer, bar, sender_info(df))
        sender.addr = addr
        try:
            _attach(sock, addr, bind, "send_dataflow_zmq")
        except BaseException:
            sender.close_monitor()
            raise
        sender.start_heartbeat()
        try:
            df.reset_state()
            try:
                bar.total = len(df)
                bar.refresh()
            except UnknownLengthError:
                pass
            for dp in df:
                sender.put(dp)
                sender.count += 1
                bar.update(1)
            sender.flush()
            sender.stop_flusher()
            if not sender.send_end(sender.count, linger):
                _warn_undelivered(addr, linger, "the end of the pass")
            elif not sender.wait_admitted(linger):  # no receiver ever took the connection
                if linger > 0:
                    _warn_undelivered(addr, linger, "the last datapoints and the end of the pass")
            else:
                close_linger[:] = [linger, True]
            return sender.count
        except KeyboardInterrupt:
            sender.stop_flusher()
            sender.try_send(encode_end(sender.index, sender.epoch, sender.count, "interrupted"))
            close_linger[:] = [_INTERRUPT_LINGER_S, False]
            raise
        except PermissionError:  # refused by the receiver: nothing can reach it
            raise
        except Exception as err:
            sender.stop_flusher()
            try:
                sender.flush()  # what was made before the error still counts
            except Exception:
                pass
            report = [type(err).__name__, str(err), traceback.format_exc()]
            sender.try_send(encode_report(sender.index, sender.epoch, report))
            close_linger[:] = [_REPORT_LINGER_S, False]
            raise
        finally:
            sender.stop_flusher()
            sender.stop_heartbeat()
            sender.close_monitor()


def _send(sock: zmq.Socket, frames: List[Any], bar: Any, check: Any = None) -> None:
    """Queue one message, waiting in short slices while the queue is full.

    ``copy=True``: a zero-copy send would read the arrays later, after *df*
    may have refilled them, and would start pyzmq's garbage-collector thread,
    which outlives the call.
    """
    blocked_since: Optional[float] = None
    noted = False
    while True:
        try:
            sock.send_multipart(frames, zmq.NOBLOCK, copy=True)
            break
        except zmq.Again:
            pass
        now = time.monotonic()
        if blocked_since is None:
            blocked_since = now
        elif not noted and now - blocked_since > _BLOCKED_NOTE_S:
            bar.set_postfix_str("waiting for the receiver")
            noted = True
        if check is not None:
            check()
        sock.poll(_POLL_MS, zmq.POLLOUT)
    if noted:
        bar.set_postfix_str("")


def _warn_undelivered(addr: str, linger: float, what: str) -> None:
    warnings.warn(
        f"send_dataflow_zmq gave up after {linger:g} s delivering {what} to {addr!r} and "
        "dropped what was left: the receiver is gone or too slow (pass a larger linger= to "
        "wait longer)",
        RuntimeWarning,
        stacklevel=4,
    )


def _close_sender(
    ctx: zmq.Context, sock: Optional[zmq.Socket], addr: str, linger: float, warn: bool
) -> None:
    if sock is not None:
        sock.close(linger=int(linger * 1000))
    start = time.monotonic()
    ctx.term()  # waits up to the linger for queued messages
    if warn and linger > 0 and time.monotonic() - start >= linger * 0.99:
        _warn_undelivered(addr, linger, "the last datapoints")


# ---- receiving -------------------------------------------------------------------


class _Endpoints:
    """A ZeroMQ context and its PULL sockets, bound or connected, with a poller."""

    def __init__(
        self,
        addrs: List[str],
        hwm: int,
        bind: bool,
        limits: Limits,
        curve: Optional[CurveServer],
    ) -> None:
        self.ctx = zmq.Context()
        self.socks: List[zmq.Socket] = []
        self.closed = False
        self.auth: Any = None
        self.allowed: Any = None
        # Datapoints received but not yet yielded: a loop left early leaves them to the next.
        self.buffer: Deque[Datapoint] = deque()
        try:
            if curve is not None:
                self.auth, self.allowed = start_authenticator(self.ctx, curve)
            for addr in addrs:
                sock = self.ctx.socket(zmq.PULL)
                self.socks.append(sock)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.RCVHWM, hwm)
                # A peer that sends a larger frame is disconnected by ZeroMQ.
                sock.setsockopt(zmq.MAXMSGSIZE, limits.max_bytes)
                if curve is not None:
                    curve.apply(sock)
                _attach(sock, addr, bind, "RemoteDataZMQ")
        except BaseException:
            self.close()
            raise
        self.names = [
            sock.getsockopt_string(zmq.LAST_ENDPOINT) or addr
            for sock, addr in zip(self.socks, addrs)
        ]
        self.poller = zmq.Poller()
        for sock in self.socks:
            self.poller.register(sock, zmq.POLLIN)
        self.index: Dict[Any, int] = {sock: i for i, sock in enumerate(self.socks)}

    @property
    def refused(self) -> int:
        """Connections the authenticator refused (0 without CURVE)."""
        return 0 if self.allowed is None else int(self.allowed.refused)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in self.socks:
            sock.close(linger=0)
        auth, self.auth = self.auth, None
        if auth is not None:
            auth.stop()
        self.ctx.term()
