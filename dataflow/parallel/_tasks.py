"""How a mapper's tasks reach its workers, and their results come back.

Each class is the consumer's :class:`dataflow._transport.Receiver` for one
kind of mapper, plus the task side: ``encode(epoch, seq, dp)`` makes a
task, ``send(task)`` hands it to a worker (``False`` when none can take it
now), and ``on_results(worker, n)`` counts what came back.
:class:`TaskChannel` holds the whole of a process mapper's flow control
(credits), so nothing else needs to know about it.
"""

from __future__ import annotations

import collections
from typing import Any, Deque, Optional

import zmq

from .._transport import (
    DATA,
    Arena,
    ItemPacker,
    Message,
    QueueReceiver,
    ZmqReceiver,
    encode,
    new_address,
    send_frames,
)
from ..serialize import Serializer
from ._loops import CREDITS, routing_id

__all__ = ["TaskChannel", "ThreadTasks"]


class ThreadTasks:
    """Tasks to worker threads through one queue, results back through another; the
    consumer's :class:`~dataflow._transport.Receiver` of a thread mapper."""

    def __init__(self, tasks: Any, results: Any) -> None:
        self.tasks = tasks
        self._results = QueueReceiver(results)

    def encode(self, epoch: int, seq: int, dp: Any) -> Any:
        return (epoch, seq, dp)

    def send(self, task: Any) -> bool:
        self.tasks.put(task)
        return True

    def on_results(self, worker: int, n: int) -> None:
        pass

    def recv(self, timeout_s: float) -> Optional[Message]:
        return self._results.recv(timeout_s)

    def close(self) -> None:
        pass


class TaskChannel:
    """The flow control of a process mapper, in one place; its consumer's receiver.

    Each worker asks for ``CREDITS`` tasks at first and for one more with
    each result (a credit: its routing id); a task goes only to a worker
    that asked for one, so a busy worker never has tasks queued behind a
    slow one, and a ROUTER with ``ROUTER_MANDATORY`` never drops a task
    silently. :meth:`recv` waits for results, and while no worker has asked
    for a task also for the first requests.
    """

    def __init__(
        self,
        ctx: zmq.Context,
        owner: str,
        serializer: Optional[Serializer],
        num_workers: int,
        task_address: Optional[str],
        result_address: Optional[str],
        arena: Optional[Arena] = None,
    ) -> None:
        self._packer = ItemPacker(owner, serializer)
        self.results = ZmqReceiver(ctx, 0, serializer, result_address, arena, owner)
        sock = self.sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        # A task for a worker that is gone raises instead of vanishing silently.
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        if task_address is None:
            self.task_address = new_address(ctx, sock)
        else:
            sock.bind(task_address)
            self.task_address = task_address
        self._poller = zmq.Poller()
        self._poller.register(self.results.sock, zmq.POLLIN)
        self._poller.register(sock, zmq.POLLIN)
        self._credits: Deque[bytes] = collections.deque()
        self._routing_ids = [routing_id(i) for i in range(num_workers)]
        self._first_credits = num_workers * CREDITS  # the first requests not yet received
        self._send_blocked = False

    def encode(self, epoch: int, seq: int, dp: Any) -> Any:
        packer = self._packer
        chunks = [packer.pack(seq), packer.pack(dp)]
        frames, packer.frames = packer.frames, []
        return encode(DATA, 0, epoch, chunks, frames)

    def send(self, task: Any) -> bool:
        """Send *task* to a worker that asked for one; ``False`` if none has."""
        credits, sock = self._credits, self.sock
        if not credits and self._first_credits:
            # The workers' first requests; later ones come with results, so once all
            # are in, the task socket need not be looked at again.
            while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                credits.append(sock.recv_multipart()[0])
                self._first_credits -= 1
        while credits:
            worker = credits.popleft()
            # copy=True: zero-copy sends would start pyzmq's garbage-collector thread in
            # the consumer, which outlives close(); and the source may reuse its arrays.
            try:
                send_frames(sock, [worker, *task], True)
            except zmq.ZMQError as err:
                if err.errno in (zmq.EHOSTUNREACH, zmq.EAGAIN):
                    continue  # that worker is gone; the liveness check will say why
                raise
            return True
        # With first requests still to come, wait for them as well as for results.
        self._send_blocked = self._first_credits > 0
        return False

    def on_results(self, worker: int, n: int) -> None:
        """Worker *worker* returned *n* results, each asking for a task."""
        if 0 <= worker < len(self._routing_ids):
            self._credits.extend([self._routing_ids[worker]] * n)

    def recv(self, timeout_s: float) -> Optional[Message]:
        if self._send_blocked:
            # No worker asked for a task: wake up as soon as one does, not only when a
            # result arrives (there may be none in flight), which would cost a whole
            # timeout per task.
            self._send_blocked = False
            events = dict(self._poller.poll(int(timeout_s * 1000)))
            if self.results.sock not in events:
                return None  # a task can be sent now (or the wait timed out)
            timeout_s = 0.0
        return self.results.recv(timeout_s)

    def close(self) -> None:
        self.sock.close(linger=0)
        self.results.close()
