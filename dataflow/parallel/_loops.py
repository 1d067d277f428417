"""What a worker does: the work loops of runners and mappers, processes and threads.

Every entry point is a module-level function with plain arguments, so that
the spawn and forkserver start methods can find it. A worker process first
runs :func:`~._workers.worker_main` and :func:`~._workers.start_worker_process`;
then its loop feeds a :class:`dataflow._transport.Sender` until it is told
to stop (:class:`~dataflow._transport.Stopped`), and reports an exception as
an error report (:func:`~._errors.error_report`) through the same sender.

Runners (:func:`produce`): the worker resets its copy of the dataflow and
sends its datapoints, forever (clones) or one pass per command (exactly-once:
the consumer sends each pass number through a pipe, and the worker begins
that pass, abandoning the one it was in). Mappers: the worker takes tasks
in chunks (``[seq, datapoint, seq, datapoint, ...]``), applies the function,
and sends ``[epoch, seq, result]`` back; a process worker asks for each
chunk (credits: ``[epoch, -n, None]`` with its results asks for *n* more
tasks; see :class:`~._tasks.TaskChannel`).
"""

from __future__ import annotations

import dataclasses
import functools
import queue as queue_module
import threading
import time
from typing import Any, Callable, Optional, Tuple

import numpy as np
import zmq

from .._collate import set_array_maker
from .._profile_workers import current as current_profile
from .._profile_workers import start_stats, worker_begins
from .._transport import (
    DATA,
    ERROR,
    OUT_OF_BAND_BYTES,
    RECONNECT_MS,
    Arena,
    Message,
    QueueSender,
    Stopped,
    ZmqSender,
    decode,
    forget_other_arenas,
)
from .._worker_state import WorkerState, begin_pass, current_state, worker_context
from ..base import DataFlow
from ..serialize import Serializer
from ..worker import WorkerInfo
from ._errors import error_report
from ._shards import first_checked
from ._workers import _POLL_S, parent_alive, start_worker_process, watch_creator

__all__ = [
    "CREDIT",
    "CREDITS",
    "mapper_thread_worker",
    "mapper_zmq_worker",
    "routing_id",
    "runner_queue_worker",
    "runner_thread_worker",
    "runner_zmq_worker",
]

# A worker of an exactly-once runner checks this often whether its pass was abandoned.
_ABANDON_CHECK_S = 0.05
# An exactly-once worker sends its state (a MARK) at least every this many datapoints
# or seconds, whichever comes first: a resumed worker reproduces at most that much.
MARK_ITEMS = 256
MARK_S = 1.0
_NOTHING = object()
# How many chunks of tasks a mapper's process worker asks for ahead: the one it works
# on, and one waiting, so that it never idles while the next chunk travels to it. Its
# first credits ask for one task each; then a worker asks for as many tasks as took it
# about CHUNK_S (at most CHUNK_TASKS): cheap functions get long chunks, which makes the
# cost of a task on the way small, and slow ones short chunks. At the end of a strict
# pass the consumer sends shorter chunks (the tasks left shared out among the workers),
# so that the work stays even there.
CREDITS = 2
CREDIT = b"1"
CHUNK_S = 0.02
CHUNK_TASKS = 64


def routing_id(index: int) -> bytes:
    """The ZeroMQ identity of mapper worker *index* (must not start with a NUL byte)."""
    return b"w%d" % index


def _stopped(stop_event: Any, parent_pid: int) -> bool:
    """Whether a worker process should stop: asked to, or its parent is gone."""
    return bool(stop_event.is_set()) or not parent_alive(parent_pid)


# ---- runners ---------------------------------------------------------------------------


def _empty_pass_error(ds: DataFlow) -> RuntimeError:
    return RuntimeError(
        f"{type(ds).__name__} yielded no datapoint in a whole pass; a runner repeats its "
        "dataflow forever, so it would wait forever. Check the source, or use "
        "exactly_once=True"
    )


def _latest_command(commands: Any) -> Any:
    """The newest command waiting in *commands* (a pipe or queue), or ``None``.

    A command is a pass number, or ``(pass number, resume)`` where *resume*
    says where the worker's part of that pass starts (see :func:`_produce`).
    """
    latest = None
    if hasattr(commands, "poll"):
        while commands.poll():
            latest = commands.recv()
    else:
        while True:
            try:
                latest = commands.get_nowait()
            except queue_module.Empty:
                break
    return latest


def _wait_command(commands: Any, sender: Any) -> Any:
    while True:
        if hasattr(commands, "poll"):
            if commands.poll(_POLL_S):
                latest = _latest_command(commands)
                assert latest is not None
                return latest
        else:
            try:
                first = commands.get(timeout=_POLL_S)
            except queue_module.Empty:
                pass
            else:
                latest = _latest_command(commands)
                return first if latest is None else latest
        sender.check_stop()


def _reset_in_worker(ds: DataFlow) -> Optional[BaseException]:
    """Reset *ds* in a fresh worker process, then start watching the consumer.

    The reset comes first, before this process starts any thread of its own (the
    watcher, ZeroMQ's I/O thread), so that a dataflow which forks workers of its
    own never forks a multi-threaded process. Returns the reset's exception, to
    be reported once the worker can send.
    """
    try:
        ds.reset_state()
    except BaseException as exc:  # reported through the sender
        return exc
    finally:
        watch_creator()
    return None


def _produce(ds: DataFlow, sender: Any, exactly_once: bool, commands: Any) -> None:
    """The work loop of a runner's worker: feed *sender* from *ds* (reset) until told to stop."""
    if not exactly_once:
        worker_begins()
        while True:
            count = 0
            for dp in ds:
                sender.put(dp)
                count += 1
            if count == 0:
                raise _empty_pass_error(ds)
    pending: Any = None
    while True:
        command = pending if pending is not None else _wait_command(commands, sender)
        epoch, resume = command if isinstance(command, tuple) else (command, None)
        sender.epoch = epoch
        # Every worker gets the same pass number from the consumer, so shuffled sources
        # draw the same new partition of their items for the pass (shard_order).
        begin_pass(epoch)
        pending = None
        marks = _Marks(ds, sender)
        resumed_count = marks.resume(resume)
        if resumed_count is None:
            continue
        count = resumed_count
        worker_begins()
        it = first_checked(ds, iter(ds))
        # Resumed: reproduce and drop what the consumer had handed out after the mark.
        for _ in range(int(resume.get("skip", 0)) if resume else 0):
            if next(it, _NOTHING) is _NOTHING:
                break
            count += 1
        last_check = time.monotonic()
        for dp in it:
            sender.put(dp)
            count += 1
            now = time.monotonic()
            marks.after(count, now)
            if now - last_check > _ABANDON_CHECK_S:
                last_check = now
                pending = _latest_command(commands)
                if pending is not None:  # the consumer started a new pass
                    sender.discard()
                    break
        else:
            marks.end(count)


def _use_shared_seed(seed: int) -> None:
    """From now on, partition the shards with *seed* (that of a run being resumed)."""
    state = current_state()
    if state is not None:
        state.info = dataclasses.replace(state.info, shared_seed=seed)


class _Marks:
    """The states an exactly-once worker sends with its datapoints, for resuming.

    After the first datapoint of a pass, and then every ``MARK_ITEMS``
    datapoints or ``MARK_S`` seconds, the worker sends a ``MARK`` with the
    state of its dataflow (``state_dict()``), and its last state with the
    end of the pass. The consumer keeps, for each worker, the last mark
    before the datapoints it handed out: a resumed worker loads it and
    reproduces the few datapoints after it without sending them. When the
    state cannot be taken (a dataflow without the protocol, or one that
    cannot say where it is just now), the reason goes once per pass instead;
    the pipeline runs on, the next marks are tried as usual, and the
    consumer's ``state_dict()`` raises with that reason only while it has no
    good mark to resume from.
    """

    def __init__(self, ds: DataFlow, sender: Any) -> None:
        self.ds, self.sender = ds, sender
        self.told = False  # whether the consumer was sent a reason in this pass
        self.next_count = 1
        self.next_time = 0.0

    def take(self) -> Tuple[Any, Optional[str]]:
        try:
            return self.ds.state_dict(), None
        except Exception as err:
            return None, f"{type(err).__name__}: {err}"

    def after(self, count: int, now: float) -> None:
        """Called after the *count*-th datapoint of the pass was sent, at time *now*."""
        if count < self.next_count and now < self.next_time:
            return
        state, problem = self.take()
        if problem is None or not self.told:
            self.sender.send_mark(count, state, problem)
            self.told = self.told or problem is not None
        self.next_count = count + MARK_ITEMS
        self.next_time = now + MARK_S

    def end(self, count: int) -> None:
        """Send the end of the part after *count* datapoints, with the last state."""
        state, problem = self.take()
        if problem is not None:
            self.sender.send_mark(count, None, problem)
        self.sender.send_end(count, state)

    def resume(self, resume: Any) -> Optional[int]:
        """Load where the worker's part of the pass starts; returns its count so far,
        or ``None`` if the part had ended (its end is sent again)."""
        if resume is None:
            return 0
        if resume.get("shared_seed") is not None:
            _use_shared_seed(int(resume["shared_seed"]))
        if resume.get("state") is not None:
            self.ds.load_state_dict(resume["state"])
        count = int(resume.get("count", 0))
        if resume.get("ended"):  # the part had run out before the state was saved
            self.sender.send_end(count, resume.get("state"))
            return None
        self.next_time = 0.0
        self.next_count = count + int(resume.get("skip", 0)) + 1
        return count


def runner_zmq_worker(
    owner: str,
    ds: DataFlow,
    info: WorkerInfo,
    address: str,
    hwm: int,
    stop_event: Any,
    commands: Any,
    parent_pid: int,
    pdeathsig: bool,
    serializer: Optional[Serializer],
    arena: Optional[Arena] = None,
) -> None:
    """Entry point of a :class:`MultiProcessRunnerZMQ` worker process."""
    parent_pid = start_worker_process(info, parent_pid, pdeathsig)
    forget_other_arenas(arena)
    failure = _reset_in_worker(ds)
    ctx = zmq.Context()
    stopped = functools.partial(_stopped, stop_event, parent_pid)
    sender = ZmqSender(ctx, address, hwm, info.index, owner, stopped, serializer, arena)
    _batches_in_arena(sender)
    stats = start_stats(sender)
    try:
        _serve(ds, sender, failure, info.sharded, commands)
    finally:
        try:
            stats.stop()
            ds.close()
        finally:
            sender.close()
            ctx.term()


def _batches_in_arena(sender: Any) -> None:
    """Have batches made in this worker (``BatchData``, map-and-batch) filled straight
    into its region of the arena, so they are sent without a copy."""
    writer = sender.packer.shm
    if writer is None:
        return

    def make(shape: Tuple[int, ...], dtype: Any) -> Any:
        if int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize < OUT_OF_BAND_BYTES:
            return None
        return writer.place(shape, dtype)

    set_array_maker(make)


def _serve(
    ds: DataFlow, sender: Any, failure: Optional[BaseException], exactly_once: bool, commands: Any
) -> bool:
    """Produce into *sender* until told to stop (then ``True``), or report the error
    that ended it (the reset's *failure*, or one raised while producing)."""
    try:
        if failure is not None:
            raise failure
        _produce(ds, sender, exactly_once, commands)
    except Stopped:
        return True
    except BaseException as exc:
        sender.send_error(error_report(exc))
    return False


def runner_queue_worker(
    ds: DataFlow,
    info: WorkerInfo,
    queue: Any,
    stop_event: Any,
    commands: Any,
    parent_pid: int,
    pdeathsig: bool,
    serializer: Serializer,
) -> None:
    """Entry point of a :class:`MultiProcessRunner` worker process."""
    parent_pid = start_worker_process(info, parent_pid, pdeathsig)
    forget_other_arenas(None)
    stopped = functools.partial(_stopped, stop_event, parent_pid)
    sender = QueueSender(queue, info.index, stopped, serializer)
    failure = _reset_in_worker(ds)
    stats = start_stats(sender)
    try:
        if _serve(ds, sender, failure, info.sharded, commands):
            queue.cancel_join_thread()  # nobody reads any more: do not wait to flush
    finally:
        try:
            stats.stop()
            ds.close()
        finally:
            queue.close()


def runner_thread_worker(
    df: DataFlow,
    state: WorkerState,
    queue: Any,
    stop_event: threading.Event,
    commands: Any,
) -> None:
    """A :class:`MultiThreadRunner` thread, as the worker *state* that made *df*."""
    info = state.info
    sender = QueueSender(queue, info.index, stop_event.is_set, None)
    with worker_context(state):
        try:
            df.reset_state()
            start_stats(sender)
            _produce(df, sender, info.sharded, commands)
        except Stopped:
            pass
        except BaseException as exc:
            sender.send_error(error_report(exc), exc)


# ---- mappers ---------------------------------------------------------------------------


def mapper_thread_worker(
    map_func: Callable[[Any], Any],
    info: WorkerInfo,
    tasks: Any,
    results: Any,
    stop_event: threading.Event,
) -> None:
    profile = current_profile()
    with worker_context(info):
        while not stop_event.is_set():
            try:
                epoch, seq, dp = tasks.get_nowait()
            except queue_module.Empty:
                begin = time.perf_counter()
                try:
                    epoch, seq, dp = tasks.get(timeout=_POLL_S)
                except queue_module.Empty:
                    continue
                finally:
                    if profile is not None and profile.start is not None:
                        profile.waiting += time.perf_counter() - begin
            try:
                result = map_func(dp)
            except BaseException as exc:
                results.put(Message(ERROR, info.index, epoch, [*error_report(exc), exc]))
                return
            results.put(Message(DATA, info.index, epoch, [(epoch, seq, result)]))


def mapper_zmq_worker(
    owner: str,
    map_func: Callable[[Any], Any],
    info: WorkerInfo,
    task_address: str,
    result_address: str,
    stop_event: Any,
    parent_pid: int,
    pdeathsig: bool,
    serializer: Optional[Serializer],
    arena: Optional[Arena] = None,
) -> None:
    """Entry point of a mapper's worker process."""
    parent_pid = start_worker_process(info, parent_pid, pdeathsig)
    forget_other_arenas(arena)
    watch_creator()
    ctx = zmq.Context()
    # The worker asks for CREDITS tasks at first and for one more with each result;
    # the consumer sends tasks only to workers that asked, so a busy worker never has
    # tasks queued behind a slow one.
    tasks = ctx.socket(zmq.DEALER)
    tasks.setsockopt(zmq.ROUTING_ID, routing_id(info.index))
    tasks.setsockopt(zmq.LINGER, 0)
    tasks.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)  # the consumer binds after the fork
    tasks.connect(task_address)
    for _ in range(CREDITS):
        tasks.send(CREDIT)
    stopped = functools.partial(_stopped, stop_event, parent_pid)
    sender = ZmqSender(ctx, result_address, 0, info.index, owner, stopped, serializer, arena)
    _batches_in_arena(sender)
    tasks.setsockopt(zmq.RCVTIMEO, int(_POLL_S * 1000))
    monotonic = time.monotonic
    stats = start_stats(sender)
    profile = current_profile()
    try:
        while True:
            try:
                frames = tasks.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:  # wait for tasks
                begin = time.perf_counter()
                try:
                    frames = tasks.recv_multipart(copy=False)
                except zmq.Again:  # no task for a while: send what waits, and look around
                    sender.flush()
                    sender.check_stop()
                    continue
                finally:
                    if profile is not None and profile.start is not None:
                        profile.waiting += time.perf_counter() - begin
            _, _, epoch, items = decode(frames, serializer)
            start = last = monotonic()
            final = len(items) - 2
            for i in range(0, len(items), 2):
                result = map_func(items[i + 1])
                try:
                    sender.put_now([epoch, items[i], result])
                except TypeError:
                    # Name the place inside the result, not inside [epoch, seq, result].
                    sender.packer.pack(result)
                    raise
                now = monotonic()
                if now - last > CHUNK_S and i < final:  # a slow task: send its result
                    sender.flush()
                last = now
            # Ask for as many tasks as take about CHUNK_S, judging by this chunk: a
            # negative seq, sent with the last results (see TaskChannel).
            each = (last - start) / max(1, len(items) // 2)
            wanted = min(CHUNK_TASKS, max(1, int(CHUNK_S / max(each, 1e-7))))
            sender.put_now([epoch, -wanted, None])
            sender.flush()
    except Stopped:
        pass
    except BaseException as exc:
        sender.send_error(error_report(exc))
    finally:
        stats.stop()
        tasks.close()
        sender.close()
        ctx.term()
