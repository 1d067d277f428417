"""How :class:`dataflow.RemoteDataZMQ` reads one received message: the datapoints
it holds, or what it says about its sender (hello and heartbeat, end of pass,
error), or a drop, counted and warned about, when it is anything else.

Nothing a peer sends raises here, except an error report of a sender when the
receiver was asked to raise (``on_error='raise'``): a malformed, truncated,
oversized or foreign message never ends the loop.
"""

from __future__ import annotations

import pickle
from typing import Any, List, Optional

from ._arrays import object_hook_writable
from ._remote_parts import (
    _MARKER,
    _NATIVE,
    _PICKLE,
    _PICKLE_PROTOCOLS,
    _PROTOCOL,
    _PROTOCOL_V1,
    _SERIALIZER,
)
from ._remote_peers import Peer, Peers, clip
from ._transport import (
    DATA,
    END,
    ERROR,
    MARK,
    Limits,
    Malformed,
    decode_untrusted,
    message_bytes,
    unpack_untrusted,
)
from .base import Datapoint
from .serialize import Serializer

__all__ = ["Inbox", "SenderError"]

# The first byte of this library's messages; tensorpack's (a msgpack list or map, or a
# pickle) never start with one of them.
_KINDS = (DATA, END, ERROR, MARK)
_DATAPOINT_TYPES = frozenset((list, dict))


class SenderError(RuntimeError):
    """A sender of :class:`~dataflow.RemoteDataZMQ` reported that its dataflow raised.

    Raised by the loop over a receiver made with ``on_error='raise'``; the
    message holds the sender's host, pid, exception and remote traceback.
    """


def peer_address(frame: Any, endpoint: str) -> str:
    """*endpoint*, with the peer's IP address where ZeroMQ knows it."""
    try:
        ip = frame.get("Peer-Address")
    except Exception:  # ipc://, or a ZeroMQ without message properties
        ip = None
    return f"{endpoint} from {ip}" if ip else endpoint


class Inbox:
    """Turns received messages into datapoints, keeping :class:`Peers` up to date."""

    def __init__(
        self,
        peers: Peers,
        limits: Limits,
        serializer: Optional[Serializer],
        allow_pickle: bool,
        allow_anonymous: bool,
        on_error: str,
    ) -> None:
        self.peers = peers
        self.limits = limits
        self.serializer = serializer
        self.allow_pickle = allow_pickle
        self.allow_anonymous = allow_anonymous
        self.on_error = on_error

    def read(self, frames: List[Any], endpoint: str) -> List[Datapoint]:
        """The datapoints of one message received on *endpoint* (maybe none)."""
        peers = self.peers
        head = frames[0].buffer
        nbytes = message_bytes(frames)
        peers.bytes += nbytes
        if len(frames) == 1 and (len(head) == 0 or head[0] not in _KINDS):
            return self._tensorpack(frames[0], endpoint)
        try:
            kind, marker, epoch, payload = decode_untrusted(frames, self.limits, nbytes)
        except Malformed as err:
            peers.drop(peer_address(frames[0], endpoint), str(err))
            return []
        version = (marker >> 4) & 0xF
        codec = marker & 0xF
        if marker & 0xFF00 != _MARKER or version not in (0, _PROTOCOL) or codec > _SERIALIZER:
            peers.drop(
                peer_address(frames[0], endpoint),
                f"not from send_dataflow_zmq (marker {marker:#06x})",
            )
            return []
        if version == 0:  # version 1, of an earlier release: no hello, no id
            if epoch != _PROTOCOL_V1 or kind != DATA:
                peers.drop(peer_address(frames[0], endpoint), f"an unknown protocol {epoch}")
                return []
            return self._anonymous_data(frames[0], endpoint, codec, payload)
        peer = peers.by_id.get(epoch)
        if kind == DATA:
            # Decoded before the sender is registered: garbage makes no new sender.
            if codec == _NATIVE and _DATAPOINT_TYPES.issuperset(map(type, payload)):
                items = payload  # the common case, checked at C speed
            else:
                who = peer.name() if peer is not None else peer_address(frames[0], endpoint)
                items = self._items(codec, payload, who)
            if not items and payload:
                return []
        if peer is None and kind != MARK:
            # Only a hello (or heartbeat) makes a sender: data of an id never announced
            # counts as anonymous (it cannot hold the pass open), and its end or error
            # report is dropped (it cannot end the pass).
            address = peer_address(frames[0], endpoint)
            if kind == DATA:
                return self._data_of_stranger(address, items)
            peers.drop(address, f"an end or error report of sender {epoch}, never announced")
            return []
        if peer is None or peer.state != "live":
            peer = peers.peer(epoch, peer_address(frames[0], endpoint))
        else:
            peer.seen = peers.clock.now()
        if kind == DATA:
            peer.received += len(items)
            peers.received += len(items)
            return items
        if kind == MARK:
            peer.learn(payload[1])
        elif kind == END:
            self._ended(peer, payload)
        else:
            self._failed(peer, payload)
        return []

    def _data_of_stranger(self, address: str, items: List[Datapoint]) -> List[Datapoint]:
        peers = self.peers
        if not self.allow_anonymous:
            peers.drop(address, "datapoints of a sender that never announced itself")
            return []
        stranger = peers.anonymous_peer(address)
        stranger.received += len(items)
        peers.received += len(items)
        return items

    # -- a sender's story ---------------------------------------------------------

    def _ended(self, peer: Peer, payload: List[Any]) -> None:
        if len(payload) > 1 and payload[1] == "interrupted":
            peer.state = "interrupted"
            self.peers.warner.warn(
                peer.name(),
                "end",
                f"RemoteDataZMQ: {peer.name()} was interrupted after {payload[0]} datapoints "
                "(Ctrl-C or a signal); the receiver goes on with the other senders",
                5,
            )
        else:
            peer.state = "finished"

    def _failed(self, peer: Peer, payload: List[Any]) -> None:
        peer.state = "failed"
        kind, message = clip(payload[0], 200), clip(payload[1], 2000)
        trace = clip(payload[2]) if len(payload) > 2 else ""
        text = (
            f"RemoteDataZMQ: the dataflow of {peer.name()} raised {kind}: {message}; that "
            f"sender stopped after {peer.received} datapoints"
        )
        if self.on_error == "raise":
            raise SenderError(f"{text}.\nIts traceback:\n{trace}")
        last = trace.strip().splitlines()[-3:] if trace.strip() else []
        summary = (" Its traceback ends: " + " | ".join(s.strip() for s in last)) if last else ""
        self.peers.warner.warn(
            peer.name(),
            "error",
            f"{text}; the receiver goes on with the other senders (on_error='raise' makes "
            f"this an error).{summary}",
            5,
        )

    # -- datapoints ---------------------------------------------------------------

    def _anonymous_data(
        self, frame: Any, endpoint: str, codec: int, payload: List[Any]
    ) -> List[Datapoint]:
        address = peer_address(frame, endpoint)
        if not self.allow_anonymous:
            self.peers.drop(
                address,
                "it comes from a sender that did not announce itself (tensorpack's, or an "
                "earlier release's), and allow_anonymous=False",
            )
            return []
        peer = self.peers.anonymous_peer(address)
        items = self._items(codec, payload, f"a sender at {address}")
        peer.received += len(items)
        self.peers.received += len(items)
        return items

    def _items(self, codec: int, payload: List[Any], who: str) -> List[Datapoint]:
        if codec == _NATIVE:
            if not _DATAPOINT_TYPES.issuperset(map(type, payload)):
                wrong = next(dp for dp in payload if type(dp) not in _DATAPOINT_TYPES)
                self.peers.drop(
                    who, f"a datapoint of type {type(wrong).__name__}, not a list or dict"
                )
                return []
            return payload
        if codec == _PICKLE:
            if not self._pickle_allowed(who, "the sender used format='pickle'", ""):
                return []
            loads: Any = pickle.loads
        elif self.serializer is not None:
            loads = self.serializer.loads
        else:
            self.peers.drop(
                who,
                "its datapoints are encoded by the sender's serializer=; pass the same "
                "serializer to RemoteDataZMQ",
            )
            return []
        try:
            return [loads(buf) for buf in payload]
        except Exception as err:
            self.peers.drop(who, f"its datapoints cannot be decoded ({type(err).__name__}: {err})")
            return []

    def _pickle_allowed(self, who: str, why: str, alternative: str) -> bool:
        if self.allow_pickle:
            return True
        self.peers.drop(
            who,
            f"it holds pickled datapoints ({why}). Unpickling runs code chosen by the sender, "
            "so it is refused unless you trust every sender that can reach this address and "
            f"pass allow_pickle=True{alternative}",
        )
        return False

    def _tensorpack(self, frame: Any, endpoint: str) -> List[Datapoint]:
        """A datapoint sent by tensorpack's send_dataflow_zmq: pickle or msgpack-numpy."""
        address = peer_address(frame, endpoint)
        buf = frame.bytes
        if len(buf) > self.limits.max_bytes:
            self.peers.drop(address, f"{len(buf)} bytes, more than the limit")
            return []
        if not self.allow_anonymous:
            self.peers.drop(
                address,
                "it is not in the format of send_dataflow_zmq with a hello (tensorpack's?), "
                "and allow_anonymous=False",
            )
            return []
        if len(buf) > 1 and buf[0] == 0x80 and buf[1] in _PICKLE_PROTOCOLS:
            why = "tensorpack's send_dataflow_zmq pickles by default"
            also = " (or have the tensorpack senders use msgpack: TENSORPACK_SERIALIZE=msgpack)"
            if not self._pickle_allowed(address, why, also):
                return []
            loads: Any = pickle.loads
        else:  # in msgpack, 0x80 is the empty map, which is the whole message
            loads = _tensorpack_msgpack
        try:
            dp = loads(buf)
        except Exception as err:
            self.peers.drop(
                address, f"it cannot be decoded as tensorpack's ({type(err).__name__}: {err})"
            )
            return []
        if type(dp) is tuple:
            dp = list(dp)
        if type(dp) is not list and type(dp) is not dict:
            self.peers.drop(address, f"a datapoint of type {type(dp).__name__}, not a list")
            return []
        peer = self.peers.anonymous_peer(address)
        peer.received += 1
        self.peers.received += 1
        return [dp]


def _tensorpack_msgpack(buf: bytes) -> Any:
    """A msgpack-numpy datapoint (tensorpack's), decoded with bounded memory."""
    return unpack_untrusted(buf, [], object_hook_writable)
