"""What travels between a worker and the consumer: one message type and its kinds.

A :class:`Message` has named fields, and every transport hands the same
type to the consumer. The kinds:

* ``DATA``: *payload* is a list of items (datapoints, or ``[epoch, seq,
  result]`` triples for mappers).
* ``END``: *payload* is ``[count]``: the worker finished pass *epoch* after
  sending *count* items; or ``[count, state]`` with the state of the
  worker's dataflow after the pass (JSON-compatible data).
* ``MARK``: *payload* is ``[count, state, problem]``: the state of the
  worker's dataflow after the first *count* items of pass *epoch*, sent
  after those items, so a resumed worker can start there; *state* is
  ``None`` and *problem* says why when the state could not be taken.
* ``ERROR``: *payload* is ``[type name, message, traceback]``, and for a
  worker thread the exception itself as a fourth element; the worker stops
  after sending it.

:class:`Sender` and :class:`Receiver` are the two ends every transport
provides (ZeroMQ in :mod:`.zmq`, queues in :mod:`.queue`).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Protocol, Sequence

__all__ = ["DATA", "END", "ERROR", "MARK", "Message", "Receiver", "Sender", "Stopped"]

DATA, END, ERROR, MARK = 1, 2, 3, 4


class Message(NamedTuple):
    """One message from a worker to the consumer."""

    kind: int  #: DATA, END, ERROR or MARK
    worker: int  #: the index of the worker that sent it
    epoch: int  #: the pass it belongs to (0 where passes are not counted)
    payload: Any  #: see the kinds above


class Stopped(Exception):
    """Raised in a worker's sender when it was told to stop (the consumer closed,
    or the process that started the worker is gone)."""


class Sender(Protocol):
    """A worker's end. ``epoch`` is the pass the next items belong to."""

    epoch: int

    def put(self, item: Any) -> None:
        """Send *item* (possibly batched with the next ones, for a few ms at most)."""

    def flush(self) -> None:
        """Send what is batched now."""

    def discard(self) -> None:
        """Drop what is batched and not yet sent (items of an abandoned pass)."""

    def send_end(self, count: int, state: Any = None) -> None:
        """Send what is batched, then the end of pass ``epoch`` after *count* items
        (with the dataflow's *state* after it, unless ``None``)."""

    def send_mark(self, count: int, state: Any, problem: Optional[str] = None) -> None:
        """Send what is batched, then a ``MARK``: the *state* after *count* items."""

    def send_error(self, report: Sequence[str], exc: Optional[BaseException] = None) -> None:
        """Report an error after what is batched; *exc* only where it can travel as is."""

    def check_stop(self) -> None:
        """Raise :class:`Stopped` if the worker should stop."""

    def close(self) -> None:
        """Release the sender (not what it sends to)."""


class Receiver(Protocol):
    """The consumer's end."""

    def recv(self, timeout_s: float) -> Optional[Message]:
        """The next message, or ``None`` if none arrived within *timeout_s*."""

    def close(self) -> None:
        """Release the receiver; later messages are lost."""
