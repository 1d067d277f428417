"""The queue transport: one message per item through a ``queue.Queue`` (worker
threads) or a ``multiprocessing`` queue (worker processes, pickled).

Nothing is batched: a queue hands over Python objects, and a multiprocessing
queue pickles each put in a feeder thread of its own.
"""

from __future__ import annotations

import queue as queue_module
import time
from typing import Any, Callable, List, Optional, Sequence

from ..serialize import Serializer
from .message import DATA, END, ERROR, MARK, Message, Stopped

__all__ = ["QueueReceiver", "QueueSender"]

# How long a blocked put waits before asking whether it should stop.
POLL_S = 0.1


class QueueSender:
    """A worker's end of a queue: one message per item (a :class:`~.message.Sender`).

    *stopped* is asked before each item and while a put blocks. With a
    *serializer*, the worker encodes each item (so an error names the
    datapoint's bad component in the worker); else items travel as they are.
    """

    def __init__(
        self,
        queue: Any,
        index: int,
        stopped: Callable[[], bool],
        serializer: Optional[Serializer],
    ) -> None:
        self.queue = queue
        self.index = index
        self.stopped = stopped
        self.serializer = serializer
        self.epoch = 0
        #: seconds spent waiting for room in the queue; and since when it waits now
        #: (0.0: it does not)
        self.blocked_s = 0.0
        self.blocked_since = 0.0

    def check_stop(self) -> None:
        if self.stopped():
            raise Stopped

    def _send(self, message: Message) -> None:
        try:
            self.queue.put_nowait(message)
            return
        except queue_module.Full:  # wait for the consumer to take some
            pass
        begin = self.blocked_since = time.monotonic()
        try:
            while True:
                try:
                    self.queue.put(message, timeout=POLL_S)
                    return
                except queue_module.Full:
                    self.check_stop()
        finally:
            self.blocked_since = 0.0
            self.blocked_s += time.monotonic() - begin

    def put(self, item: Any) -> None:
        self.check_stop()  # else a closed runner's worker goes on until the queue is full
        payload = self.serializer.dumps(item) if self.serializer is not None else [item]
        self._send(Message(DATA, self.index, self.epoch, payload))

    def flush(self) -> None:
        self.check_stop()

    def discard(self) -> None:
        pass

    def send_end(self, count: int, state: Any = None) -> None:
        body = [count] if state is None else [count, state]
        self._send(Message(END, self.index, self.epoch, body))

    def send_mark(self, count: int, state: Any, problem: Optional[str] = None) -> None:
        self._send(Message(MARK, self.index, self.epoch, [count, state, problem]))

    def send_error(self, report: Sequence[str], exc: Optional[BaseException] = None) -> None:
        """Report an error; a thread also passes the exception itself (*exc*)."""
        payload: List[Any] = list(report) if exc is None else [*report, exc]
        try:
            self._send(Message(ERROR, self.index, self.epoch, payload))
        except Stopped:
            pass

    def close(self) -> None:
        pass


class QueueReceiver:
    """The consumer's end of a queue (a :class:`~.message.Receiver`).

    With a *serializer*, a ``DATA`` message's payload is one encoded item,
    decoded here into a list of that item.
    """

    def __init__(self, queue: Any, serializer: Optional[Serializer] = None) -> None:
        self.queue = queue
        self.serializer = serializer

    def recv(self, timeout_s: float) -> Optional[Message]:
        try:
            message: Message = self.queue.get(timeout=timeout_s)
        except queue_module.Empty:
            return None
        if message.kind == DATA and self.serializer is not None:
            return message._replace(payload=[self.serializer.loads(message.payload)])
        return message

    def close(self) -> None:
        close = getattr(self.queue, "close", None)  # a multiprocessing queue
        if close is not None:
            close()
