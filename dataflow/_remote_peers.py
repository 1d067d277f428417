"""What :class:`dataflow.RemoteDataZMQ` knows of its senders: who announced
itself, who is live, who finished, failed or went silent, what was dropped,
and the warnings that say so (rate-limited, so a flood does not flood the log).

Time here is the receiver's *active* time (:class:`_Clock`): it runs only
while the receiver reads or waits for messages, not while the training loop
holds a datapoint, so a slow training step never makes a sender look silent.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

__all__ = ["PeerWarning", "RemoteStats", "SenderInfo"]

# A peer's warnings of one kind are given at most once per this many seconds;
# the ones in between are counted and mentioned in the next.
WARN_EVERY_S = 10.0
# At most this many warnings in all per WARN_EVERY_S.
WARNINGS_PER_WINDOW = 20
# At most this many peers are remembered for rate-limiting and counting drops.
_MAX_TRACKED = 1024
# The longest text of a sender's report (repr, traceback) that is kept.
_MAX_TEXT = 4000


class PeerWarning(RuntimeWarning):
    """A warning about a sender of :class:`~dataflow.RemoteDataZMQ`: it failed, went
    silent or was interrupted, a message was dropped, or no sender is live.

    Filter it like any warning, e.g. to turn it into an error in a test:
    ``warnings.simplefilter("error", PeerWarning)``.
    """


class SenderInfo(NamedTuple):
    """One sender as :attr:`RemoteDataZMQ.stats <dataflow.RemoteDataZMQ.stats>` reports it.

    Example:
        >>> SenderInfo(7, "host-a", 123, "tcp://127.0.0.1:5555", "DataFromList(...)",
        ...            "live", 10).state
        'live'
    """

    id: int  #: the random id it announced (0 for a sender without the protocol)
    host: str  #: its host name ('' if unknown)
    pid: int  #: its process id (0 if unknown)
    address: str  #: the endpoint it sent to (and its IP address, where known)
    description: str  #: the repr of the dataflow it sends
    state: str  #: 'live', 'finished', 'failed', 'interrupted', 'silent' or 'anonymous'
    received: int  #: datapoints received from it


class RemoteStats(NamedTuple):
    """Counters of a :class:`~dataflow.RemoteDataZMQ` since ``reset_state()``.

    Example:
        >>> RemoteStats(received=5, bytes=100, dropped=0, refused=0, senders=()).dropped
        0
    """

    received: int  #: datapoints received (yielded or waiting to be)
    bytes: int  #: bytes of the messages received, dropped ones included
    dropped: int  #: messages dropped: malformed, truncated, oversized, foreign or refused
    refused: int  #: connections refused by CURVE authentication
    senders: Tuple[SenderInfo, ...]  #: every sender seen in the current pass


def clip(text: Any, limit: int = _MAX_TEXT) -> str:
    text = text if isinstance(text, str) else repr(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Clock:
    """Seconds that pass only between :meth:`resume` and :meth:`pause`."""

    def __init__(self) -> None:
        self._base = 0.0
        self._since: Optional[float] = None

    def resume(self) -> None:
        if self._since is None:
            self._since = time.monotonic()

    def pause(self) -> None:
        if self._since is not None:
            self._base += time.monotonic() - self._since
            self._since = None

    def now(self) -> float:
        since = self._since
        return self._base if since is None else self._base + time.monotonic() - since


class Peer:
    """A sender that announced itself (or sent data with its id)."""

    __slots__ = ("id", "host", "pid", "address", "description", "state", "received", "seen")

    def __init__(self, sender_id: int, address: str, now: float) -> None:
        self.id = sender_id
        self.host = ""
        self.pid = 0
        self.address = address
        self.description = ""
        self.state = "live"
        self.received = 0
        self.seen = now

    def learn(self, info: Any) -> None:
        """Take host, pid and description from a heartbeat's *info* map, if well formed."""
        if type(info) is not dict:
            return
        host, pid, description = info.get("host"), info.get("pid"), info.get("repr")
        if type(host) is str:
            self.host = clip(host, 255)
        if type(pid) is int:
            self.pid = pid
        if type(description) is str:
            self.description = clip(description, 200)

    def name(self) -> str:
        who = [f"id {self.id:08x}"]
        if self.host:
            who.append(f"host {self.host}")
        if self.pid:
            who.append(f"pid {self.pid}")
        return f"sender {', '.join(who)} at {self.address}"

    def info(self) -> SenderInfo:
        return SenderInfo(
            self.id, self.host, self.pid, self.address, self.description, self.state, self.received
        )


class Warner:
    """Warnings per (peer, kind), at most one per WARN_EVERY_S, counting the rest; and
    at most WARNINGS_PER_WINDOW in all per WARN_EVERY_S (many peers, e.g. forged ids)."""

    def __init__(self) -> None:
        self._last: Dict[Tuple[str, str], Tuple[float, int]] = {}
        self._window_start = 0.0
        self._in_window = 0
        self._held_back = 0

    def warn(self, who: str, kind: str, text: str, stacklevel: int = 4) -> None:
        key = (who, kind)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] < WARN_EVERY_S:
            self._last[key] = (last[0], last[1] + 1)
            return
        if now - self._window_start >= WARN_EVERY_S:
            self._window_start, self._in_window = now, 0
        if self._in_window >= WARNINGS_PER_WINDOW:
            self._held_back += 1
            return
        self._in_window += 1
        if len(self._last) >= _MAX_TRACKED:
            self._last.clear()
        self._last[key] = (now, 0)
        if last is not None and last[1]:
            text += f" ({last[1]} more like it since the last warning)"
        if self._held_back:
            text += f" ({self._held_back} warnings about other peers were held back)"
            self._held_back = 0
        warnings.warn(text, PeerWarning, stacklevel=stacklevel)


class Peers:
    """The senders of the current pass and what the receiver knows of them."""

    def __init__(self, heartbeat_timeout: float) -> None:
        self.heartbeat_timeout = heartbeat_timeout
        self.clock = _Clock()
        self.warner = Warner()
        self.by_id: Dict[int, Peer] = {}
        self.anonymous: Dict[str, Peer] = {}
        self.seen_in_pass = 0
        self.dropped = 0
        self.bytes = 0
        self.received = 0
        self._next_check = 0.0
        self._idle_since: Optional[float] = None
        self._idle_warned = 0.0

    # -- the passes -------------------------------------------------------------

    def new_pass(self) -> None:
        """Forget the senders that are done; the live ones carry over."""
        self.by_id = {k: p for k, p in self.by_id.items() if p.state == "live"}
        self.anonymous.clear()
        self.seen_in_pass = len(self.by_id)

    def live(self) -> List[Peer]:
        return [p for p in self.by_id.values() if p.state == "live"]

    def pass_over(self, min_senders: int) -> bool:
        """Whether enough senders were seen in this pass and none of them is live."""
        if self.seen_in_pass < min_senders:
            return False
        return not any(p.state == "live" for p in self.by_id.values())

    # -- what arrives -----------------------------------------------------------

    def peer(self, sender_id: int, address: str) -> Peer:
        """The peer of *sender_id*, new if unknown; marks it seen now."""
        now = self.clock.now()
        peer = self.by_id.get(sender_id)
        if peer is None:
            if len(self.by_id) >= _MAX_TRACKED:
                self._forget_done()
            if len(self.by_id) >= _MAX_TRACKED:  # ids made up by a peer: forget the oldest
                del self.by_id[min(self.by_id.values(), key=lambda p: p.seen).id]
            peer = self.by_id[sender_id] = Peer(sender_id, address, now)
            self.seen_in_pass += 1
        elif peer.state == "silent":
            peer.state = "live"
            self.warner.warn(
                peer.name(), "back", f"RemoteDataZMQ: {peer.name()} is sending again", 6
            )
        peer.seen = now
        return peer

    def anonymous_peer(self, address: str) -> Peer:
        peer = self.anonymous.get(address)
        if peer is None:
            if len(self.anonymous) >= _MAX_TRACKED:
                self.anonymous.clear()
            peer = self.anonymous[address] = Peer(0, address, 0.0)
            peer.state = "anonymous"
        peer.seen = self.clock.now()
        return peer

    def _forget_done(self) -> None:
        self.by_id = {k: p for k, p in self.by_id.items() if p.state == "live"}

    def drop(self, who: str, why: str) -> None:
        """Count a dropped message and warn (rate-limited) naming *who* sent it."""
        self.dropped += 1
        self.warner.warn(
            who,
            "drop",
            f"RemoteDataZMQ dropped a message from {who}: {why}. The other senders' "
            "datapoints keep coming; see RemoteDataZMQ.stats.dropped",
            6,
        )

    # -- liveness -----------------------------------------------------------------

    def check(self, names: List[str], idle_warn_s: float) -> None:
        """Mark live senders silent for longer than the heartbeat timeout, and warn
        now and then while no sender is live. Cheap: looks twice a second at most."""
        now = self.clock.now()
        if now < self._next_check:
            return
        self._next_check = now + 0.5
        live = False
        for peer in self.by_id.values():
            if peer.state != "live":
                continue
            silent = now - peer.seen
            if silent > self.heartbeat_timeout:
                peer.state = "silent"
                self.warner.warn(
                    peer.name(),
                    "silent",
                    f"RemoteDataZMQ: {peer.name()} sent nothing for {silent:.1f} s (its "
                    f"heartbeat stopped; the timeout is {self.heartbeat_timeout:g} s): it "
                    "is taken as gone, and the receiver goes on with the other senders. Look "
                    "at that machine: the process may have been killed, or the network cut",
                    6,
                )
            else:
                live = True
        if live or any(p.seen > now - 1.0 for p in self.anonymous.values()):
            self._idle_since = None
            return
        if self._idle_since is None:
            self._idle_since, self._idle_warned = now, idle_warn_s
        elif now - self._idle_since >= self._idle_warned:
            where = " or ".join(repr(n) for n in names)
            warnings.warn(
                f"RemoteDataZMQ has had no live sender on {where} for "
                f"{now - self._idle_since:.0f} s and keeps waiting; start a sender "
                "(python -m dataflow.serve, or send_dataflow_zmq), or pass timeout= to "
                "stop waiting",
                PeerWarning,
                stacklevel=5,
            )
            self._idle_warned = min(2 * self._idle_warned, 600.0)

    def stats(self, refused: int) -> RemoteStats:
        senders = [p.info() for p in self.by_id.values()]
        senders.extend(p.info() for p in self.anonymous.values())
        return RemoteStats(self.received, self.bytes, self.dropped, refused, tuple(senders))
