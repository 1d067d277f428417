"""Mappers: one source, a function spread over worker threads or processes.

The process that iterates reads the source and hands each datapoint, as a
task numbered in order, to whichever worker is free; at most *buffer_size*
tasks are out at once. Results come back in the order they finish, or in
the order of the source with ``ordered=True``.

* ``strict=False`` (tensorpack's default): the workers are kept busy across
  passes. A pass yields ``len(ds)`` results of the endless stream over
  repeated passes of ``ds``; the tasks in flight when it ends open the next
  pass.
* ``strict=True``: a pass yields the results of exactly one pass of ``ds``,
  each datapoint once; a pass abandoned early is discarded.
"""

from __future__ import annotations

import collections
import queue as queue_module
import weakref
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Tuple

import zmq

from .._checks import check_bool, check_callable, check_int
from .._collate import UseList, check_use_list
from .._state import ResumeNotSupportedError, abandon
from .._transport import private_address
from ..base import DataFlow, Datapoint, UnknownLengthError
from ..serialize import Serializer
from ._consumer import ParallelBase
from ._loops import mapper_thread_worker, mapper_zmq_worker
from ._resume import MapperPass
from ._tasks import TaskChannel, ThreadTasks, _Chunks, _MapAndBatch
from ._workers import ProcessGroup, ThreadGroup, check_start_method, run_finalizer
from ._workers import check_serializer as _check_serializer

__all__ = [
    "MultiProcessMapAndBatchData",
    "MultiProcessMapAndBatchDataZMQ",
    "MultiProcessMapData",
    "MultiProcessMapDataZMQ",
    "MultiThreadMapData",
]

_HANDED = object()  # the result of a task handed out before the state was saved


def _empty_source_error(ds: DataFlow) -> RuntimeError:
    return RuntimeError(
        f"{type(ds).__name__} yielded no datapoint in a whole pass; with strict=False the "
        "source is read again and again, so it would wait forever. Check the source, or use "
        "strict=True"
    )


class _MapperBase(ParallelBase):
    """Tasks out, results in: strict or streaming passes, in order or not."""

    _work_kind = "mapper"

    def _setup_mapper(
        self,
        map_func: Any,
        buffer_size: Any,
        strict: Any,
        ordered: Any,
        seed: Any,
        timeout: Any,
    ) -> None:
        self.map_func = check_callable("map_func", map_func)
        self.buffer_size = check_int("buffer_size", buffer_size, 1, "a positive int")
        self.strict = check_bool("strict", strict)
        self.ordered = check_bool("ordered", ordered)
        self._setup(seed, timeout)
        self._inflight = 0
        self._seq = 0
        self._epoch = 0
        self._received = 0
        self._ready: Deque[Any] = collections.deque()
        self._pending: Dict[int, Any] = {}
        self._next_out = 0
        self._source: Optional[Iterator[Any]] = None
        self._source_yielded = False
        self._sent = 0  # tasks sent in this pass (strict) or in all (not strict)
        self._pass: Optional[MapperPass] = None  # the strict pass being read
        self._pass_length: Optional[int] = None  # its number of tasks, if known
        self._resume: Optional[Dict[str, Any]] = None  # a loaded state, for the next pass

    def _task_source(self) -> DataFlow:
        return self.ds

    @property
    def _max_inflight(self) -> int:
        return self.buffer_size

    def _release(self) -> None:
        """Stop the workers, then close the source (which was reset in this process)."""
        released = self._released
        super()._release()
        if not released:
            self._task_source().close()

    def __len__(self) -> int:
        return len(self._task_source())

    def _iterate(self) -> Iterator[Datapoint]:
        return self._iter_strict() if self.strict else self._iter_stream()

    # -- results ------------------------------------------------------------------------

    def _pump(self) -> None:
        """Wait a little for results and file them in ``self._ready``."""
        message = self._poll_message()
        if message is None:
            return
        for result_epoch, seq, result in message.payload:
            if seq < 0:  # not a result: the worker asks for -seq more tasks
                self._receiver.credit(message.worker, -seq)
                continue
            self._inflight -= 1
            if self.strict and result_epoch != self._epoch:
                continue  # from an abandoned pass
            self._received += 1
            self._file(seq, result)

    def _file(self, seq: int, result: Any) -> None:
        """Queue the result of task *seq* to be handed out (in order, with *ordered*)."""
        if not self.ordered:
            self._ready.append((seq, result))
            return
        self._pending[seq] = result
        while self._next_out in self._pending:
            ready = self._pending.pop(self._next_out)
            if ready is not _HANDED:
                self._ready.append((self._next_out, ready))
            self._next_out += 1

    # -- tasks --------------------------------------------------------------------------

    def _send_tasks(self, source: Iterator[Any], track: Optional[MapperPass]) -> bool:
        """Read tasks from *source* into chunks for the workers while they ask for some
        and the buffer has room; ``True`` once *source* is exhausted."""
        channel = self._receiver
        while self._inflight < self._max_inflight:
            room = min(channel.room(), self._max_inflight - self._inflight)
            if room <= 0:
                return False
            if track is not None and self._pass_length is not None:
                # The end of a pass: the tasks left are shared out among the workers, so
                # that none gets a long chunk while the others have nothing left to do.
                left = self._pass_length - track.read
                room = min(room, max(1, -(-left // self._num_workers)))
            added = 0
            try:
                while added < room:
                    dp = next(source)
                    if track is not None and not track.next_task():
                        self._seq += 1  # handed out before the saved state
                        if self.ordered:
                            self._file(self._seq - 1, _HANDED)
                        continue
                    channel.add(self._epoch, self._seq, dp)
                    self._seq += 1
                    self._inflight += 1
                    added += 1
            except StopIteration:
                return True
            finally:
                self._sent += added
                channel.flush()
        return False

    def _iter_strict(self) -> Iterator[Datapoint]:
        self._epoch += 1
        self._received = 0
        self._ready.clear()
        self._pending.clear()
        resume, self._resume = self._resume, None
        track = self._pass = MapperPass(self.ds, self._seq, resume)
        self._next_out = track.start + track.read
        try:
            self._pass_length = len(self._task_source())
        except (NotImplementedError, TypeError):
            self._pass_length = None
        self._sent = 0
        source = iter(self._task_source())
        exhausted = False
        while True:
            if not exhausted:
                exhausted = self._send_tasks(source, track)
            while self._ready:
                seq, result = self._ready.popleft()
                track.handed(seq)  # counted before the caller holds it
                if result is not None:
                    yield result
            if exhausted and self._received == self._sent:
                self._pass = None
                return
            self._pump()

    # -- resume -------------------------------------------------------------------------

    def own_state_dict(self) -> Dict[str, Any]:
        """Where the pass stands: see docs/checkpointing.md."""
        if not self.strict:
            raise ResumeNotSupportedError(
                f"{self._name} with strict=False has no position to save: its workers are kept "
                "busy across passes, so a pass holds results of the next one. Pass "
                "strict=True (a pass is exactly one pass of ds), which can save and resume "
                "its position"
            )
        if self._resume is not None:  # loaded, not read yet: still that position
            return dict(self._resume)
        if self._pass is None:
            return {"in_pass": False, "source": self.ds.state_dict()}
        return self._pass.saved(self._name)

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        if not self.strict:
            self.own_state_dict()  # raises: no position without strict
        self.ds.load_state_dict(state["source"])
        if not state["in_pass"] or int(state["n"]) == 0:
            # Saved between passes, or at the start of one: the input starts a new pass
            # next, as it did in the saved run (which called iter() on it anew).
            abandon(self.ds)
        self._resume = state if state["in_pass"] else None

    def _fill_stream(self) -> None:
        while self._inflight < self._max_inflight:
            if self._source is None:
                self._source = iter(self._task_source())
                self._source_yielded = False
            before = self._sent
            if not self._send_tasks(self._source, None):
                self._source_yielded = self._source_yielded or self._sent > before
                return
            if not (self._source_yielded or self._sent > before):
                self._source = None
                raise _empty_source_error(self._task_source())
            self._source = None

    def _iter_stream(self) -> Iterator[Datapoint]:
        try:
            n: Optional[int] = len(self)
        except UnknownLengthError:
            n = None
        k = 0
        while n is None or k < n:
            self._fill_stream()
            if not self._ready:
                self._pump()
                continue
            _, result = self._ready.popleft()
            k += 1
            if result is not None:
                yield result
        # A worker that died during a short pass may not have been missed yet: its
        # tasks were made up by the others' results. Say so before the pass ends.
        self._check_workers()


# ---- the mappers -------------------------------------------------------------------------


class MultiThreadMapData(_MapperBase):
    """Yield ``map_func(dp)`` for the datapoints of *ds*, computed by *num_thread* threads.

    The consumer's thread reads ``ds`` and queues up to *buffer_size*
    datapoints; the threads apply *map_func* (which must be thread-safe) and
    a ``None`` result drops the datapoint, as in :class:`MapData`. Threads
    suit functions that wait or release the GIL (file or network reads,
    OpenCV, numpy). ``len()`` is ``len(ds)`` (less the dropped ones).
    Results come in the order they finish, or in the order of ``ds`` with
    *ordered*. Passes follow *strict* (see :mod:`dataflow.parallel.map`).
    An exception in *map_func* is raised by the consumer as
    :class:`WorkerError`, with the original exception as its ``__cause__``.

    Args:
        ds: the source dataflow.
        num_thread: number of threads, >= 1.
        map_func: a function of one datapoint returning a datapoint or ``None``.
        buffer_size: most datapoints handed out and not yet returned, >= 1 (default 200).
        strict: a pass is exactly one pass of ``ds`` (default ``False``: keep
            the threads busy across passes).
        ordered: yield results in the order of ``ds`` (default ``False``).
        seed: seeds what each thread's ``get_worker_info()`` reports.
        timeout: seconds to wait for the next datapoint before raising
            ``TimeoutError`` with each worker's current Python stack; time
            the caller spends between datapoints does not count (default
            ``None``: wait, and warn with the stacks after a minute of silence).

    Example:
        >>> df = MultiThreadMapData(DataFromList([[i] for i in range(5)], shuffle=False),
        ...                         num_thread=2, map_func=lambda dp: [dp[0] * 10],
        ...                         strict=True, ordered=True)
        >>> df.reset_state()
        >>> [dp[0] for dp in df]
        [0, 10, 20, 30, 40]
        >>> df.close()
    """

    def __init__(
        self,
        ds: DataFlow,
        num_thread: int,
        map_func: Callable[[Any], Any],
        *,
        buffer_size: int = 200,
        strict: bool = False,
        ordered: bool = False,
        seed: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> None:
        super().__init__(ds)
        self.num_thread = self._num_workers = check_int(
            "num_thread", num_thread, 1, "a positive int"
        )
        self._setup_mapper(map_func, buffer_size, strict, ordered, seed, timeout)

    def _start(self) -> None:
        self.ds.reset_state()
        group = self._workers = ThreadGroup(self._name)
        tasks: Any = queue_module.Queue()
        results: Any = queue_module.Queue()
        self._receiver = ThreadTasks(tasks, results)
        self._finalizer = weakref.finalize(self, run_finalizer, group, [])
        args = [(self.map_func, info, tasks, results, group.stop_event) for info in self._infos()]
        self._start_threads(group, mapper_thread_worker, args)


class MultiProcessMapDataZMQ(_MapperBase):
    """Yield ``map_func(dp)`` for the datapoints of *ds*, computed by *num_proc* processes.

    The consumer reads ``ds`` and sends datapoints over ZeroMQ to free
    workers, in chunks of as many as take a worker about 5 ms, with at most
    *buffer_size* out at once; the worker applies *map_func* and sends the
    results back, large arrays through shared memory (see *shm*). A ``None`` result
    drops the datapoint. ``len()`` is ``len(ds)`` (less the dropped ones).
    Results come in the order they finish, or in the order of ``ds`` with
    *ordered*. Passes follow *strict* (see :mod:`dataflow.parallel.map`);
    with ``strict=True`` every datapoint is mapped exactly once per pass.
    Errors and shutdown are as in :class:`MultiProcessRunnerZMQ`: an
    exception in *map_func* or an unserializable result is raised by the
    consumer as :class:`WorkerError`, a dead worker as :class:`WorkerDiedError`.

    Args:
        ds: the source dataflow; it is reset and read in the consumer's process.
        num_proc: number of worker processes, >= 1.
        map_func: a function of one datapoint returning a datapoint or ``None``;
            with the fork start method it need not be picklable.
        buffer_size: most datapoints handed out and not yet returned, >= 1 (default 200).
        strict: a pass is exactly one pass of ``ds`` (default ``False``: keep
            the workers busy across passes).
        ordered: yield results in the order of ``ds`` (default ``False``).
        seed: seeds each worker's ``random`` and ``numpy.random`` (and what
            its ``get_worker_info()`` reports) differently but reproducibly.
        start_method: ``'fork'`` (default where available), ``'spawn'`` or ``'forkserver'``.
        serializer: a :class:`~dataflow.serialize.Serializer` instead of the
            built-in msgpack wire format.
        timeout: seconds to wait for the next datapoint before raising
            ``TimeoutError`` with each worker's current Python stack; time
            the caller spends between datapoints does not count (default
            ``None``: wait, and warn with the stacks after a minute of silence).
        shm, shm_bytes: large arrays of the results through shared memory, as
            in :class:`MultiProcessRunnerZMQ`.

    Example:
        >>> df = MultiProcessMapDataZMQ(DataFromList([[i] for i in range(5)], shuffle=False),
        ...                             num_proc=2, map_func=lambda dp: [dp[0] ** 2],
        ...                             strict=True, ordered=True)
        >>> df.reset_state()
        >>> [dp[0] for dp in df]
        [0, 1, 4, 9, 16]
        >>> df.close()

    Note:
        Functions that draw random numbers from ``numpy.random`` get a
        different stream in every worker (reseeded at start); with a *seed*
        and ``ordered=True`` the output is reproducible only if each result
        does not depend on which worker computed it.
    """

    def __init__(
        self,
        ds: DataFlow,
        num_proc: int,
        map_func: Callable[[Any], Any],
        *,
        buffer_size: int = 200,
        strict: bool = False,
        ordered: bool = False,
        seed: Optional[int] = None,
        start_method: Optional[str] = None,
        serializer: Optional[Serializer] = None,
        timeout: Optional[float] = None,
        shm: Optional[bool] = None,
        shm_bytes: Optional[int] = None,
    ) -> None:
        super().__init__(ds)
        self.num_proc = self._num_workers = check_int("num_proc", num_proc, 1, "a positive int")
        self._setup_mapper(map_func, buffer_size, strict, ordered, seed, timeout)
        self._start_method = check_start_method(start_method)
        self._serializer = _check_serializer(serializer)
        self._setup_shm(shm, shm_bytes)

    def _worker_function(self) -> Callable[[Any], Any]:
        return self.map_func

    def _start(self) -> None:
        group = self._workers = ProcessGroup(self._name, self._start_method)
        function = self._portable(self._worker_function(), self._start_method)
        closers: List[Callable[[], None]] = []
        self._finalizer = weakref.finalize(self, run_finalizer, group, closers)
        self._arena = self._new_arena(self._serializer, closers)
        # The workers first, then the source's reset (which may fork workers of its own),
        # then this process's ZeroMQ context: no thread of ours runs during a fork.
        task_address, result_address = private_address(), private_address()
        if task_address is None or result_address is None:  # no private address: bind first
            task_address, result_address = self._bind(None, None, closers)
            self._start_workers(task_address, result_address, function)
            self._task_source().reset_state()
        else:
            self._start_workers(task_address, result_address, function)
            self._task_source().reset_state()
            self._bind(task_address, result_address, closers)

    def _start_workers(self, task_address: str, result_address: str, function: Any) -> None:
        group = self._workers
        assert group is not None
        infos = self._infos()
        args = [
            (
                self._name,
                function,
                infos[i],
                task_address,
                result_address,
                group.stop_event,
                group.parent_pid,
                group.pdeathsig,
                self._serializer,
                self._arena,
            )
            for i in range(self._num_workers)
        ]
        self._start_group(self._start_method, mapper_zmq_worker, args)

    def _bind(
        self,
        task_address: Optional[str],
        result_address: Optional[str],
        closers: List[Callable[[], None]],
    ) -> Tuple[str, str]:
        """Create this process's sockets, bound to the given addresses or to new ones."""
        ctx = zmq.Context()
        closers.append(ctx.term)
        channel = self._receiver = TaskChannel(
            ctx,
            self._name,
            self._serializer,
            self._num_workers,
            task_address,
            result_address,
            self._arena,
        )
        closers.insert(0, channel.close)
        return channel.task_address, channel.results.address


class MultiProcessMapAndBatchDataZMQ(MultiProcessMapDataZMQ):
    """Yield batches of ``map_func(dp)``, mapped and stacked by *num_proc* processes.

    The consumer reads ``ds`` in groups of *batch_size* datapoints and sends
    each group to a free worker, which maps every datapoint and stacks the
    results component-wise as :class:`BatchData` does, so the consumer only
    receives finished batches (through shared memory).
    ``len()`` is ``len(ds) // batch_size`` (plus one for a last, smaller
    batch with *remainder*). A ``None`` result drops its datapoint, which
    makes its batch smaller. Passes, order, errors and shutdown are as in
    :class:`MultiProcessMapDataZMQ`.

    Args:
        ds: the source dataflow.
        num_proc: number of worker processes, >= 1.
        map_func: a function of one datapoint returning a datapoint or ``None``.
        batch_size: datapoints per batch, >= 1.
        buffer_size: most datapoints handed out and not yet returned, at least
            *batch_size*; default ``batch_size * num_proc * 2``.
        remainder: also yield the last, smaller batch of a pass (default ``False``).
        use_list: as in :class:`BatchData`: ``True`` keeps every component a
            list of values; a list of bools (list datapoints) or a dict of
            bools by key (dict datapoints) chooses per component. Default
            ``False``: stack everything that can be stacked.
        strict, ordered, seed, start_method, serializer, timeout, shm, shm_bytes:
            as in MultiProcessMapDataZMQ.

    Example:
        >>> df = MultiProcessMapAndBatchDataZMQ(
        ...     DataFromList([[i] for i in range(6)], shuffle=False), num_proc=2,
        ...     map_func=lambda dp: [dp[0] + 1], batch_size=3, strict=True, ordered=True)
        >>> df.reset_state()
        >>> [b[0].tolist() for b in df]
        [[1, 2, 3], [4, 5, 6]]
        >>> df.close()
    """

    def __init__(
        self,
        ds: DataFlow,
        num_proc: int,
        map_func: Callable[[Any], Any],
        batch_size: int,
        buffer_size: Optional[int] = None,
        *,
        remainder: bool = False,
        use_list: UseList = False,
        strict: bool = False,
        ordered: bool = False,
        seed: Optional[int] = None,
        start_method: Optional[str] = None,
        serializer: Optional[Serializer] = None,
        timeout: Optional[float] = None,
        shm: Optional[bool] = None,
        shm_bytes: Optional[int] = None,
    ) -> None:
        self.batch_size = check_int("batch_size", batch_size, 1, "a positive int")
        n_proc = check_int("num_proc", num_proc, 1, "a positive int")
        if buffer_size is None:
            buffer_size = batch_size * n_proc * 2
        check_int("buffer_size", buffer_size, 1, "a positive int")
        if buffer_size < batch_size:
            raise ValueError(
                f"buffer_size must be at least batch_size ({batch_size}), got {buffer_size!r}"
            )
        self.remainder = check_bool("remainder", remainder)
        self.use_list = check_use_list(use_list)
        super().__init__(
            ds,
            num_proc,
            map_func,
            buffer_size=max(1, buffer_size // batch_size),
            strict=strict,
            ordered=ordered,
            seed=seed,
            start_method=start_method,
            serializer=serializer,
            timeout=timeout,
            shm=shm,
            shm_bytes=shm_bytes,
        )
        self.buffer_size = buffer_size
        self._chunks = _Chunks(ds, self.batch_size, self.remainder)

    def _task_source(self) -> DataFlow:
        return self._chunks

    def _worker_function(self) -> Callable[[Any], Any]:
        return _MapAndBatch(self.map_func, self._name, self.use_list)

    @property
    def _max_inflight(self) -> int:
        return max(1, self.buffer_size // self.batch_size)


#: tensorpack's name of :class:`MultiProcessMapDataZMQ`.
MultiProcessMapData = MultiProcessMapDataZMQ
#: tensorpack's name of :class:`MultiProcessMapAndBatchDataZMQ`.
MultiProcessMapAndBatchData = MultiProcessMapAndBatchDataZMQ
