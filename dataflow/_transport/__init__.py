"""How messages move between workers and the consumer: the transport layer.

It knows nothing of dataflows, runners, seeds or worker processes: a worker
hands items to a :class:`Sender`, the consumer takes :class:`Message` objects
from a :class:`Receiver`. This package's namespace is the one interface
the layers above use (:mod:`dataflow.parallel`, :mod:`dataflow.remote`);
they import from here, never from the modules inside.

* :mod:`.message`: :class:`Message` (kind, worker, epoch, payload), the
  kinds ``DATA``, ``END``, ``ERROR`` and ``MARK``, :class:`Stopped`, and the
  :class:`Sender` / :class:`Receiver` protocols.
* :mod:`.wire`: the frames of a message, the packing of items with large
  arrays as frames of their own, and the batching rule.
* :mod:`.zmq`: ZeroMQ addresses, :class:`ZmqReceiver`, and the batching
  senders :class:`BatchSender` and :class:`ZmqSender`.
* :mod:`.queue`: :class:`QueueSender` and :class:`QueueReceiver` over thread
  and multiprocessing queues.
* :mod:`.shm`: the shared-memory :class:`Arena` that large arrays of the
  ZeroMQ senders and receivers travel through, and :func:`create_arena`.
* :mod:`.guard`: :func:`decode_untrusted`, which reads the wire format from
  peers that may send anything, within :class:`Limits`, or raises
  :class:`Malformed`.

A new transport (shared memory, Ray) is one more module here that provides
a sender and a receiver; the consumers hold a receiver and do not change.
"""

from .guard import Limits, Malformed, decode_untrusted, message_bytes, unpack_untrusted
from .message import DATA, END, ERROR, MARK, Message, Receiver, Sender, Stopped
from .queue import QueueReceiver, QueueSender
from .shm import Arena, SharedMemoryWarning, create_arena, forget_other_arenas
from .waits import pause_signals, set_pauser
from .wire import (
    OUT_OF_BAND_BYTES,
    PREFIX,
    ItemPacker,
    decode,
    encode,
    encode_end,
    encode_mark,
    encode_report,
)
from .zmq import (
    POLL_S,
    RECONNECT_MS,
    BatchSender,
    ZmqReceiver,
    ZmqSender,
    new_address,
    private_address,
    send_frames,
)

__all__ = [
    "Arena",
    "SharedMemoryWarning",
    "create_arena",
    "forget_other_arenas",
    "DATA",
    "END",
    "ERROR",
    "MARK",
    "OUT_OF_BAND_BYTES",
    "POLL_S",
    "PREFIX",
    "RECONNECT_MS",
    "BatchSender",
    "ItemPacker",
    "Limits",
    "Malformed",
    "Message",
    "QueueReceiver",
    "QueueSender",
    "Receiver",
    "Sender",
    "Stopped",
    "ZmqReceiver",
    "ZmqSender",
    "decode",
    "decode_untrusted",
    "encode",
    "encode_end",
    "encode_mark",
    "encode_report",
    "message_bytes",
    "new_address",
    "pause_signals",
    "private_address",
    "send_frames",
    "set_pauser",
    "unpack_untrusted",
]
