"""How a mapper's tasks reach its workers, and their results come back.

Each class is the consumer's :class:`dataflow._transport.Receiver` for one
kind of mapper, plus the task side: ``room()`` says how many tasks may be
sent now (0: none), ``add(epoch, seq, dp)`` adds one, ``flush()`` hands
them to a worker, and ``on_results(worker, n)`` counts what came back.
:class:`TaskChannel` holds the whole of a process mapper's flow control
(credits), so nothing else needs to know about it. The tasks of a mapper
that batches are chunks of its input (:class:`_Chunks`), which its workers map
and stack (:class:`_MapAndBatch`).
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Deque, Iterator, List, Optional, Tuple

import zmq

from .._collate import UseList, map_and_collate
from .._transport import (
    DATA,
    Arena,
    ItemPacker,
    Message,
    QueueReceiver,
    ZmqReceiver,
    encode,
    new_address,
    pause_signals,
    send_frames,
)
from ..base import DataFlow, Datapoint
from ..serialize import Serializer
from ._loops import CREDITS, routing_id

__all__ = ["TaskChannel", "ThreadTasks"]


class ThreadTasks:
    """Tasks to worker threads through one queue, results back through another; the
    consumer's :class:`~dataflow._transport.Receiver` of a thread mapper."""

    def __init__(self, tasks: Any, results: Any) -> None:
        self.tasks = tasks
        self._results = QueueReceiver(results)

    def room(self) -> int:
        return 1 << 30  # the queue takes any number

    def add(self, epoch: int, seq: int, dp: Any) -> None:
        self.tasks.put((epoch, seq, dp))

    def flush(self) -> None:
        pass

    def credit(self, worker: int, n: int) -> None:
        pass

    def recv(self, timeout_s: float) -> Optional[Message]:
        return self._results.recv(timeout_s)

    def close(self) -> None:
        pass


class TaskChannel:
    """The flow control of a process mapper, in one place; its consumer's receiver.

    Tasks travel in chunks: a worker asks for its next chunk with a credit
    that says how many tasks it wants (see :func:`~._loops.mapper_zmq_worker`:
    as many as take it a few milliseconds): at first ``CREDITS`` credits for
    one task each, through the task socket, then one with the results of
    each chunk it finished (:meth:`credit`). A chunk goes only to a worker
    that asked for one, so a busy worker never has tasks queued behind a
    slow one, and a ROUTER with ``ROUTER_MANDATORY`` never drops a chunk
    silently. The consumer asks :meth:`room` how many tasks the next chunk
    may hold, adds them (:meth:`add`) and sends it (:meth:`flush`);
    :meth:`recv` waits for results, and while first credits are still to
    come, for those too.
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
        self._credits: Deque[Tuple[bytes, int]] = collections.deque()
        self._items: List[bytes] = []  # the packed [seq, dp] pairs of the chunk being made
        self._epoch = 0
        self._chunk: Optional[List[Any]] = None  # a chunk made, waiting for a worker
        self._routing_ids = [routing_id(i) for i in range(num_workers)]
        self._first_credits = num_workers * CREDITS  # first credits not yet received
        self._send_blocked = False

    def _take_credits(self) -> None:
        """Read the first credits that arrived, without waiting; later ones come with
        results, so once all are in, the task socket need not be looked at again."""
        sock = self.sock
        while self._first_credits and sock.poll(0, zmq.POLLIN):
            worker, _ = sock.recv_multipart()
            self._credits.append((worker, 1))
            self._first_credits -= 1

    def room(self) -> int:
        """How many tasks the next chunk may hold; 0 while no worker asked for one."""
        if self._chunk is not None and not self._send_chunk():
            return 0
        if not self._credits:
            self._take_credits()
            if not self._credits:
                self._send_blocked = self._first_credits > 0
                return 0
        return self._credits[0][1]

    def add(self, epoch: int, seq: int, dp: Any) -> None:
        """Add task *seq* of pass *epoch* to the chunk being made."""
        self._epoch = epoch
        packer = self._packer
        packed = packer.pack(dp)  # first: if it cannot be packed, nothing was added
        self._items.append(packer.pack(seq))
        self._items.append(packed)

    def flush(self) -> None:
        """Send the chunk being made to the worker that asked first."""
        if not self._items:
            return
        packer = self._packer
        frames, packer.frames = packer.frames, []
        self._chunk = encode(DATA, 0, self._epoch, self._items, frames)
        self._items = []
        self._send_chunk()

    def _send_chunk(self) -> bool:
        chunk = self._chunk
        assert chunk is not None
        while True:
            if not self._credits:
                self._take_credits()
                if not self._credits:
                    self._send_blocked = self._first_credits > 0
                    return False
            worker, _ = self._credits.popleft()
            # copy=True: zero-copy sends would start pyzmq's garbage-collector thread in
            # the consumer, which outlives close(); and the source may reuse its arrays.
            try:
                send_frames(self.sock, [worker, *chunk], True)
            except zmq.ZMQError as err:
                if err.errno in (zmq.EHOSTUNREACH, zmq.EAGAIN):
                    continue  # that worker is gone; the liveness check will say why
                raise
            self._chunk = None
            return True

    def credit(self, worker: int, n: int) -> None:
        """Worker *worker* asked for a chunk of *n* tasks (with its results)."""
        if 0 <= worker < len(self._routing_ids):
            self._credits.append((self._routing_ids[worker], max(1, n)))

    def recv(self, timeout_s: float) -> Optional[Message]:
        if self._send_blocked:
            # No worker asked for tasks yet: wake up as soon as one does, not only when
            # a result arrives (there may be none in flight).
            self._send_blocked = False
            resume = pause_signals()
            try:
                events = dict(self._poller.poll(int(timeout_s * 1000)))
            finally:
                if resume is not None:
                    resume()
            if self.results.sock not in events:
                return None  # tasks can be sent now (or the wait timed out)
            timeout_s = 0.0
        return self.results.recv(timeout_s)

    def close(self) -> None:
        self.sock.close(linger=0)
        self.results.close()


# ---- the tasks of a mapper that batches --------------------------------------------


class _Chunks(DataFlow):
    """Groups of *batch_size* consecutive datapoints of *ds*, each a list (the tasks
    of :class:`MultiProcessMapAndBatchDataZMQ`)."""

    def __init__(self, ds: DataFlow, batch_size: int, remainder: bool) -> None:
        self.ds = ds
        self.batch_size = batch_size
        self.remainder = remainder

    def reset_state(self) -> None:
        self.ds.reset_state()

    def close(self) -> None:
        self.ds.close()

    def __len__(self) -> int:
        n = len(self.ds)
        return n // self.batch_size + int(self.remainder and n % self.batch_size > 0)

    def __iter__(self) -> Iterator[Datapoint]:
        chunk: List[Any] = []
        for dp in self.ds:
            chunk.append(dp)
            if len(chunk) == self.batch_size:
                yield chunk
                chunk = []
        if chunk and self.remainder:
            yield chunk


class _MapAndBatch:
    """Map every datapoint of a chunk and stack the results into one batch."""

    def __init__(
        self, map_func: Callable[[Any], Any], owner: str, use_list: UseList = False
    ) -> None:
        self.map_func = map_func
        self.owner = owner
        self.use_list = use_list

    def __call__(self, chunk: List[Any]) -> Any:
        return map_and_collate(self.owner, self.map_func, chunk, self.use_list)
