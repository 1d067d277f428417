"""What runs inside a :class:`~dataflow.parallel.ray.RayRunner` actor: chunks of one shard.

The consumer makes :class:`RayWorker` a Ray actor class (``ray.remote``) and
calls it; Ray runs each actor in a process of its own, on any node of the
cluster. The actor holds its copy of the dataflow, shipped pickled with
cloudpickle and reset inside the actor with the :class:`~dataflow.worker.WorkerInfo`
a process worker gets, so sources shard and seed themselves as in
:class:`~dataflow.MultiProcessRunnerZMQ`.

Each call of :meth:`RayWorker.next_chunk` returns the next few datapoints of
the actor's pass as a list of ``(kind, payload)`` messages, the same kinds a
process worker sends (``DATA``, ``MARK``, ``END``, ``ERROR`` of
:mod:`dataflow._transport`): its datapoints (numpy arrays inside them travel
through Ray's object store as they are), the states of its dataflow now and
then (``_loops._Marks``: after the first datapoint of a pass, then every few
hundred datapoints or every second, and with the end of its part), the end
of its part of the pass, or the error that stopped it. The consumer keeps a
few calls outstanding per actor: that bounds the data in flight.

A call carries the pass number; the first call of a pass (or the first call
to an actor that replaces a lost one) also says where the actor's part
starts (a state to load and how many datapoints after it to reproduce and
drop), exactly as the command of an exactly-once process worker.
"""

from __future__ import annotations

import os
import pickle
import socket
import time
from typing import Any, Iterator, List, Optional, Tuple

from .._rng import seed_globals
from .._transport import DATA, END, ERROR, MARK
from .._worker_state import begin_pass, set_process_worker
from ..base import DataFlow
from ..worker import WorkerInfo
from ._errors import error_report
from ._loops import _empty_pass_error, _Marks
from ._shards import first_checked

__all__ = ["RayWorker", "chunk_nbytes"]

# A call returns once its chunk has the bytes of arrays the consumer asks for at most
# (CHUNK_BYTES by default), or once it has at least one datapoint and CHUNK_S seconds
# have passed, whichever comes first (besides the chunk size): large arrays travel a
# few at a time, and a slow source still hands its datapoints out promptly.
CHUNK_BYTES = 32 << 20
CHUNK_S = 0.05
_NOTHING = object()

Messages = List[Tuple[int, Any]]


def chunk_nbytes(dp: Any) -> int:
    """The bytes of the numpy arrays (anything with ``nbytes``) among a datapoint's components."""
    components = dp.values() if isinstance(dp, dict) else dp
    total = 0
    try:
        for c in components:
            total += int(getattr(c, "nbytes", 0) or 0)
    except TypeError:  # not a list or dict: the contract check reports it elsewhere
        return 0
    return total


class _Collector:
    """A sender (as :class:`~._loops._Marks` uses one) that collects the messages of a call."""

    def __init__(self) -> None:
        self.messages: Messages = []
        self.data: List[Any] = []

    def put(self, dp: Any) -> None:
        self.data.append(dp)

    def flush(self) -> None:
        if self.data:
            self.messages.append((DATA, self.data))
            self.data = []

    def send_mark(self, count: int, state: Any, problem: Optional[str] = None) -> None:
        self.flush()
        self.messages.append((MARK, [count, state, problem]))

    def send_end(self, count: int, state: Any = None) -> None:
        self.flush()
        self.messages.append((END, [count] if state is None else [count, state]))

    def take(self) -> Messages:
        self.flush()
        messages, self.messages = self.messages, []
        return messages


class RayWorker:
    """The actor: worker *info* of a RayRunner, running its copy of the pickled dataflow.

    Args:
        owner: the runner's name, for messages.
        pickled: the dataflow, pickled with cloudpickle (not reset).
        info: this worker's :class:`~dataflow.worker.WorkerInfo`.
        quota: with several ranks, how many datapoints of each pass this
            worker hands out (the rest of its part is read and dropped);
            ``None``: all of them.
    """

    def __init__(self, owner: str, pickled: bytes, info: WorkerInfo, quota: Optional[int]) -> None:
        self.owner, self.pickled, self.info, self.quota = owner, pickled, info, quota
        self.ds: Optional[DataFlow] = None
        self.failed = False
        self.epoch: Optional[int] = None
        self.it: Optional[Iterator[Any]] = None
        self.count = 0  # datapoints of the pass handed to the consumer
        self.marks: Optional[_Marks] = None
        self.sender = _Collector()

    def hello(self) -> Tuple[int, str]:
        """``(pid, node address)`` of this actor; answered as soon as the actor runs."""
        try:
            import ray

            node = str(ray.util.get_node_ip_address())
        except Exception:  # pragma: no cover - outside Ray, or no address
            node = socket.gethostname()
        return os.getpid(), node

    def _setup(self) -> DataFlow:
        """Unpickle and reset the dataflow, as this worker (once, at the first call)."""
        if self.ds is None:
            set_process_worker(self.info)
            seed_globals(self.info)
            try:
                ds = pickle.loads(self.pickled)
            except (ImportError, AttributeError) as err:  # same type, with what to do
                raise type(err)(
                    f"{err}. The actor could not unpickle the pipeline: the modules that "
                    "define its classes and functions must be importable where the actor "
                    "runs (install them on every node, pass worker_options={'runtime_env': "
                    "...}, or call cloudpickle.register_pickle_by_value(module) before "
                    "reset_state())"
                ) from err
            self.pickled = b""
            ds.reset_state()
            self.ds = ds
        return self.ds

    def next_chunk(
        self, epoch: int, resume: Any, exactly_once: bool, max_items: int, max_bytes: int
    ) -> Messages:
        """The next messages of pass *epoch*: at most *max_items* datapoints, fewer
        after *max_bytes* of arrays or ``CHUNK_S`` seconds.

        *resume* (``None``, or what the consumer's ``Part.command()`` gives, with
        ``"shared_seed"``) is read only when the call starts a pass. A call for a
        pass that ended returns nothing.
        """
        if self.failed:
            return []
        try:
            ds = self._setup()
            if exactly_once:
                return self._chunk_of_pass(ds, epoch, resume, max_items, max_bytes)
            return self._chunk_of_clone(ds, max_items, max_bytes)
        except BaseException as exc:  # reported; the consumer raises it and stops us
            self.failed = True
            self.it = None
            messages = self.sender.take()
            # With where it ran: the consumer may not have its first answer yet.
            messages.append((ERROR, [*error_report(exc), *self.hello()]))
            return messages

    def close(self) -> None:
        """Release the dataflow (the consumer asks before it kills the actor)."""
        self.it = None
        if self.ds is not None:
            self.ds.close()

    # -- exactly-once passes ------------------------------------------------------

    def _begin(self, ds: DataFlow, epoch: int, resume: Any) -> bool:
        """Start pass *epoch*; ``False`` if the part had ended before the resumed state."""
        self.epoch, self.it = epoch, None
        begin_pass(epoch)
        marks = self.marks = _Marks(ds, self.sender)
        count = marks.resume(resume)
        if count is None:  # its end is among the messages now
            return False
        it = first_checked(ds, iter(ds))
        for _ in range(int(resume.get("skip", 0)) if resume else 0):
            if next(it, _NOTHING) is _NOTHING:
                break
            count += 1
        self.count, self.it = count, it
        return True

    def _chunk_of_pass(
        self, ds: DataFlow, epoch: int, resume: Any, max_items: int, max_bytes: int
    ) -> Messages:
        if epoch != self.epoch and not self._begin(ds, epoch, resume):
            return self.sender.take()
        it, marks = self.it, self.marks
        if it is None or marks is None:  # this part of the pass ended already
            return self.sender.take()
        quota = self.quota
        start = time.monotonic()
        nbytes = sent = 0
        while sent < max_items and nbytes < max_bytes:
            if sent and time.monotonic() - start >= CHUNK_S:
                break
            dp = next(it, _NOTHING)
            if dp is _NOTHING:
                self._end(marks)
                break
            if quota is not None and self.count >= quota:
                continue  # past this rank's share: read and dropped (see _end)
            self.sender.put(dp)
            self.count += 1
            sent += 1
            nbytes += chunk_nbytes(dp)
            marks.after(self.count, time.monotonic())
        return self.sender.take()

    def _end(self, marks: _Marks) -> None:
        self.it = None
        if self.quota is not None and self.count < self.quota:
            raise RuntimeError(
                f"{self.owner} worker {self.info.index}: shard {self.info.part[0]} of "
                f"{self.info.part[1]} ended after {self.count} datapoints, but its len() "
                f"promised at least {self.quota}, and every rank must yield the same number "
                "or the last collective of the pass hangs. A dataflow in the pipeline "
                "reports a len() larger than it yields"
            )
        marks.end(self.count)

    # -- clones ---------------------------------------------------------------------

    def _chunk_of_clone(self, ds: DataFlow, max_items: int, max_bytes: int) -> Messages:
        start = time.monotonic()
        nbytes = sent = 0
        fresh = False  # whether the current iterator has yielded nothing yet
        while sent < max_items and nbytes < max_bytes:
            if sent and time.monotonic() - start >= CHUNK_S:
                break
            if self.it is None:
                self.it, fresh = iter(ds), True
            dp = next(self.it, _NOTHING)
            if dp is _NOTHING:
                self.it = None
                if fresh:
                    raise _empty_pass_error(ds)
                continue
            fresh = False
            self.sender.put(dp)
            sent += 1
            nbytes += chunk_nbytes(dp)
        return self.sender.take()
