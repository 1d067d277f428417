"""The parts of :mod:`dataflow.remote` that are not its public classes: argument
checks, the codecs of its messages, the batching sender, and the receiving sockets."""

from __future__ import annotations

import math
import pickle
import time
import warnings
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

import zmq

from ._checks import check_serializer as _check_serializer
from ._transport import BatchSender, ItemPacker
from .base import Datapoint
from .serialize import PickleSerializer, Serializer

# The "worker" field of a message: this marker plus the codec of its datapoints.
_MARKER = 0xDF00
_NATIVE, _PICKLE, _SERIALIZER = 0, 1, 2
# The "epoch" field of a message: the version of this protocol.
_PROTOCOL = 1
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


class _Sender(BatchSender):
    """Batches datapoints by the rule of the parallel dataflows' workers; a flusher
    thread sends a batch that would otherwise wait for the next datapoint."""

    copy = True  # see _send

    def __init__(self, sock: zmq.Socket, codec: int, serializer: Optional[Serializer], bar: Any):
        super().__init__(
            sock, _MARKER | codec, _PROTOCOL, ItemPacker("send_dataflow_zmq", serializer)
        )
        self.bar = bar

    def _send(self, frames: List[Any]) -> None:
        _send(self.sock, frames, self.bar)


def _send(sock: zmq.Socket, frames: List[Any], bar: Any) -> None:
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
        sock.poll(_POLL_MS, zmq.POLLOUT)
    if noted:
        bar.set_postfix_str("")


def _close_sender(ctx: zmq.Context, sock: Optional[zmq.Socket], addr: str, linger: float) -> None:
    if sock is not None:
        sock.close(linger=int(linger * 1000))
    start = time.monotonic()
    ctx.term()  # waits up to the linger for queued messages
    if linger > 0 and time.monotonic() - start >= linger * 0.99:
        warnings.warn(
            f"send_dataflow_zmq gave up after {linger:g} s delivering the last datapoints to "
            f"{addr!r} and dropped them: the receiver is gone or too slow (pass a larger "
            "linger= to wait longer)",
            RuntimeWarning,
            stacklevel=3,
        )


# ---- receiving -------------------------------------------------------------------


class _Endpoints:
    """A ZeroMQ context and its PULL sockets, bound or connected, with a poller."""

    def __init__(self, addrs: List[str], hwm: int, bind: bool) -> None:
        self.ctx = zmq.Context()
        self.socks: List[zmq.Socket] = []
        self.closed = False
        # Datapoints received but not yet yielded: a loop left early leaves them to the next.
        self.buffer: Deque[Datapoint] = deque()
        try:
            for addr in addrs:
                sock = self.ctx.socket(zmq.PULL)
                self.socks.append(sock)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.RCVHWM, hwm)
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

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in self.socks:
            sock.close(linger=0)
        self.ctx.term()
