"""Runners: run copies of a dataflow in worker processes or threads and merge their output.

Two ways to split the work:

* **Clones** (the default, as in tensorpack): every worker runs its own copy
  of ``ds`` over and over, so the merged stream has the same distribution as
  ``ds`` (i.i.d. clones). This suits random sources (shuffled lists, random
  crops): each worker draws its own random numbers. A pass of the runner is
  the next ``len(ds)`` datapoints of the merged stream.
* **Exactly-once epochs** (``exactly_once=True``): worker *i* of *N* reads
  only its own shard of ``ds`` (sources that can shard do so through
  :func:`dataflow.worker.get_worker_info`), and one pass of the runner is one
  pass of every shard: each datapoint exactly once.
"""

from __future__ import annotations

import collections
import queue as queue_module
import weakref
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Tuple, Union

import zmq

from .._checks import check_bool, check_callable, check_int
from .._clones import warn_if_clones_repeat
from .._transport import DATA, END, MARK, QueueReceiver, ZmqReceiver, private_address
from .._worker_state import WorkerState, worker_context
from ..base import DataFlow, Datapoint, UnknownLengthError
from ..serialize import PickleSerializer, Serializer
from ..worker import WorkerInfo
from ._consumer import ParallelBase
from ._loops import runner_queue_worker, runner_thread_worker, runner_zmq_worker
from ._resume import Part, loaded_state, saved_state
from ._shards import copies_everything, not_sharded
from ._workers import ProcessGroup, ThreadGroup, check_start_method, run_finalizer
from ._workers import check_serializer as _check_serializer

__all__ = [
    "MultiProcessPrefetchData",
    "MultiProcessRunner",
    "MultiProcessRunnerZMQ",
    "MultiThreadPrefetchData",
    "MultiThreadRunner",
    "PrefetchData",
    "PrefetchDataZMQ",
]

# ---- the consumer -------------------------------------------------------------------


class _RunnerBase(ParallelBase):
    """What the three runners share: clone streams and exactly-once passes."""

    _commands: List[Any]

    def _setup_runner(self, exactly_once: Any, seed: Any, timeout: Any) -> None:
        self._sharded = self._exactly_once = check_bool("exactly_once", exactly_once)
        self._setup(seed, timeout)
        self._buffer: Deque[Any] = collections.deque()
        self._epoch = 0
        self._in_pass = False
        self._parts: List[Part] = []  # each worker's part of the current (or last) pass
        self._resume: Optional[Dict[str, Any]] = None  # a loaded state, for the next pass

    def _shard_lengths(self, ds: DataFlow) -> List[int]:
        lengths = []
        for info in self._infos():
            with worker_context(info):
                lengths.append(len(ds))
        return lengths

    def _check_shards(self, ds: DataFlow) -> None:
        """Refuse a dataflow that does not shard itself when exactly-once passes are asked for."""
        if not self._exactly_once or self._num_workers == 1:
            return
        try:
            total, shards = len(ds), self._shard_lengths(ds)
        except UnknownLengthError:
            return
        if copies_everything(total, shards):
            raise ValueError(self._not_sharded(ds, sum(shards), total))

    def _not_sharded(self, ds: DataFlow, shards: int, total: int) -> str:
        def reads_everything(source: DataFlow) -> Optional[bool]:
            try:
                return copies_everything(len(source), self._shard_lengths(source))
            except Exception:  # unknown, or a length that fails: not the one to name
                return None

        return not_sharded(self._name, ds, self._num_workers, shards, total, reads_everything)

    def __len__(self) -> int:
        if self._exactly_once:
            return sum(self._shard_lengths(self.ds))
        return len(self.ds)

    def _iterate(self) -> Iterator[Datapoint]:
        return self._iter_epoch() if self._exactly_once else self._iter_stream()

    def _iter_stream(self) -> Iterator[Datapoint]:
        warn_if_clones_repeat(self, self.ds, self._num_workers)
        try:
            n: Optional[int] = len(self)
        except UnknownLengthError:
            n = None
        buf = self._buffer
        k = 0
        while n is None or k < n:
            if not buf:
                buf.extend(self._next_message().payload)
                continue
            yield buf.popleft()
            k += 1

    def _iter_epoch(self) -> Iterator[Datapoint]:
        resume, self._resume = self._resume, None
        n = self._num_workers
        if resume is not None and resume["in_pass"]:
            epoch = self._epoch = resume["epoch"]  # the rest of the saved pass
            parts: List[Any] = [Part.resumed(w) for w in resume["workers"]]
        elif resume is not None:  # between passes: load, then the next pass
            self._epoch += 1
            epoch = self._epoch
            parts = [Part.starting(state, True, load=True) for state in resume["workers"]]
        else:
            self._epoch += 1
            epoch = self._epoch
            known = not self._parts or not self._in_pass  # after a whole pass, or the first
            parts = [Part.starting(state, known) for state in self._last_states()]
        self._parts = parts
        self._in_pass = True
        commands = [part.command() for part in parts]
        if resume is not None:  # the partition of the saved run, in every worker
            commands = [dict(c or {}, shared_seed=resume["shared_seed"]) for c in commands]
        self._send_commands(epoch, commands)
        ended = 0  # a worker whose part had ended ends again: counted then
        # A worker's first datapoints of the pass wait here for its first mark, which
        # follows right behind them: so every datapoint handed out has a state to
        # resume from, even in a pipeline whose random state is fresh entropy.
        held: Dict[int, List[Any]] = {}
        while ended < n:
            kind, worker, msg_epoch, payload = self._next_message()
            if msg_epoch != epoch:
                continue  # left over from an abandoned pass
            part = parts[worker]
            if kind == DATA and not part.marked:
                held.setdefault(worker, []).extend(payload)
                continue
            ready = held.pop(worker, [])
            if kind == DATA:
                ready.extend(payload)
            elif kind == MARK:
                part.mark(payload)
            for dp in ready:
                part.handed += 1  # counted before the caller holds it
                yield dp
            if kind == END:
                ended += 1
                part.end(payload)
        self._in_pass = False

    def _last_states(self) -> List[Any]:
        """Each worker's state after the last whole pass (``None`` before the first)."""
        if not self._parts or self._in_pass:
            return [None] * self._num_workers
        return [part.state for part in self._parts]

    # -- resume ----------------------------------------------------------------------

    def own_state_dict(self) -> Dict[str, Any]:
        """Where each worker's part of the pass stands (see docs/checkpointing.md)."""
        if self._resume is not None:  # loaded, not read yet: still that position
            return dict(self._resume)
        return saved_state(self, self._parts, self._in_pass)

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        if not self._exactly_once:
            self.own_state_dict()  # raises: clone mode has no position
        if self._parts:
            # Its workers' messages are tagged with pass numbers the state would reuse.
            raise ValueError(
                f"load_state_dict(): {self._name} has already iterated; load a state into a "
                "freshly built pipeline, after reset_state() and before its first iter()"
            )
        self._epoch, self._shared_seed, self._resume = loaded_state(self, state)

    def _send_commands(self, epoch: int, resumes: List[Any]) -> None:
        try:
            for conn, resume in zip(self._commands, resumes):
                conn.send(epoch if resume is None else (epoch, resume))
        except OSError:  # a worker died and closed its end: say which
            self._check_workers()
            raise


class MultiProcessRunnerZMQ(_RunnerBase):
    """Yield the merged output of *num_proc* worker processes, each running a copy of *ds*.

    Each worker process resets its own copy of ``ds`` and pushes its
    datapoints over ZeroMQ (an ``ipc://`` abstract socket on Linux, loopback
    TCP elsewhere), msgpack-encoded; small datapoints are batched into
    larger messages. numpy arrays of 64 KiB or more travel through shared
    memory: the worker copies them into its region of the runner's arena,
    and they arrive as writable arrays that view it, valid for as long as
    they are referenced (see ``shm``).

    **Clones (default).** Every worker iterates its copy of ``ds`` again and
    again. With ``num_proc=1`` the output is exactly ``ds``'s, in order;
    with more, datapoints from the workers interleave, and the stream has the
    distribution of ``ds`` when ``ds`` is random. ``len()`` is ``len(ds)``:
    a pass is the next ``len(ds)`` datapoints of the merged stream (forever
    when ``ds`` has no length), and what a pass leaves behind opens the next.

    **Exactly-once** (``exactly_once=True``). Worker *i* reads only its shard
    of ``ds`` (``DataFromList``, ``DataFromIterable``, ``FakeData``, the
    storage-format readers and the dataset readers shard themselves; see
    :func:`dataflow.worker.get_worker_info`),
    a pass ends when every worker finished its shard, and so one pass yields
    each datapoint of ``ds`` exactly once. ``len()`` is the sum of the
    shards' lengths.

    Errors never hang: an exception in a worker is raised by the consumer as
    :class:`WorkerError` (original type and message, worker index, pid and
    the worker's traceback), and a worker that dies without a word (a
    signal, ``os._exit``) raises :class:`WorkerDiedError` within about a
    second, naming the signal. An exception is also an instance of the
    worker's own exception type (``except FileNotFoundError:`` catches it).
    With *timeout*, a stuck worker raises ``TimeoutError`` naming where
    each worker is. Workers ignore Ctrl-C, end with the process that
    started them (even when it is killed), and stop at ``close()`` (from
    any thread: an iteration in progress then raises
    :class:`~dataflow.DataFlowTerminated`), ``with``, garbage collection
    and interpreter exit. Memory: up to *hwm* messages queued on each side.

    Args:
        ds: the dataflow to run; with the default fork start method it need
            not be picklable.
        num_proc: number of worker processes, >= 1.
        hwm: ZeroMQ high-water mark: how many messages may wait in the queue
            of each side before the workers block (default 50).
        exactly_once: shard ``ds`` over the workers, one pass = each
            datapoint once (default ``False``: i.i.d. clones).
        seed: seeds every worker's random streams differently but
            reproducibly (``numpy.random.SeedSequence``): each
            ``RNGDataFlow`` and augmentor the worker resets, and the global
            ``random`` and ``numpy.random``. ``None`` (default): fresh
            entropy in every worker.
        start_method: ``'fork'`` (the default where available),
            ``'spawn'`` or ``'forkserver'`` (these pickle ``ds`` with
            cloudpickle, so lambdas work, but not open files or locks).
        serializer: a :class:`~dataflow.serialize.Serializer` for the
            datapoints instead of the built-in msgpack wire format (e.g.
            ``PickleSerializer()`` for Python objects msgpack cannot store).
        timeout: seconds to wait for the next datapoint before raising
            ``TimeoutError`` with each worker's current Python stack; time
            the caller spends between datapoints does not count (default
            ``None``: wait, and warn with the stacks after a minute of silence).
        shm: large arrays through shared memory (``None``, the default: where
            the platform has it; ``True``: also warn when it cannot be used;
            ``False``: as ZeroMQ frames); see docs/parallel.md.
        shm_bytes: the arena's size, split over the workers (default: 1 GiB of
            address space per worker, committed as the arrays need it).

    Example:
        >>> df = MultiProcessRunnerZMQ(DataFromList([[i] for i in range(6)], shuffle=False),
        ...                            num_proc=2, exactly_once=True)
        >>> df.reset_state()
        >>> sorted(dp[0] for dp in df), len(df)
        ([0, 1, 2, 3, 4, 5], 6)
        >>> df.close()

    Note:
        Without ``exactly_once`` each worker runs a full copy: clones of a
        source that is not random yield every datapoint ``num_proc`` times
        per ``num_proc`` passes, in no fixed order (e.g. with
        ``DataFromList([[0], [1]], shuffle=False)`` and 2 workers a pass may
        be ``[[0], [0]]``). A datapoint must not be changed after it was
        yielded: with ``shm=False`` its large arrays are sent from their own
        memory, later.
    """

    def __init__(
        self,
        ds: DataFlow,
        num_proc: int = 1,
        hwm: int = 50,
        *,
        exactly_once: bool = False,
        seed: Optional[int] = None,
        start_method: Optional[str] = None,
        serializer: Optional[Serializer] = None,
        timeout: Optional[float] = None,
        shm: Optional[bool] = None,
        shm_bytes: Optional[int] = None,
    ) -> None:
        super().__init__(ds)
        self.num_proc = self._num_workers = check_int("num_proc", num_proc, 1, "a positive int")
        self.hwm = check_int("hwm", hwm, 1, "a positive int")
        self._start_method = check_start_method(start_method)
        self._serializer = _check_serializer(serializer)
        self._setup_runner(exactly_once, seed, timeout)
        self._setup_shm(shm, shm_bytes)
        self._commands: List[Any] = []

    def _start(self) -> None:
        self._check_shards(self.ds)
        group = self._workers = ProcessGroup(self._name, self._start_method)
        ds = self._portable(self.ds, self._start_method)
        # The workers start before this process has a ZeroMQ context (whose I/O thread
        # would make every fork a fork of a multi-threaded process); they connect to an
        # address bound right after, and ZeroMQ connects them once it exists.
        address = private_address()
        closers: List[Callable[[], None]] = []
        self._finalizer = weakref.finalize(self, run_finalizer, group, closers)
        arena = self._arena = self._new_arena(self._serializer, closers)
        worker_ends: List[Any] = []
        if self._exactly_once:
            for _ in range(self._num_workers):
                recv_end, send_end = group.context.Pipe(duplex=False)
                worker_ends.append(recv_end)
                self._commands.append(send_end)
        else:
            worker_ends = [None] * self._num_workers
        infos = self._infos()
        args = [
            (
                self._name,
                ds,
                infos[i],
                address or "",
                self.hwm,
                group.stop_event,
                worker_ends[i],
                group.parent_pid,
                group.pdeathsig,
                self._serializer,
                arena,
            )
            for i in range(self._num_workers)
        ]
        if address is None:  # no private address without binding: bind first
            receiver = self._bind_receiver(None, closers)
            args = [(a[0], a[1], a[2], receiver.address, *a[4:]) for a in args]
            self._start_group(self._start_method, runner_zmq_worker, args)
        else:
            self._start_group(self._start_method, runner_zmq_worker, args)
            self._bind_receiver(address, closers)

    def _bind_receiver(
        self, address: Optional[str], closers: List[Callable[[], None]]
    ) -> ZmqReceiver:
        ctx = zmq.Context()
        closers.append(ctx.term)
        receiver = self._receiver = ZmqReceiver(
            ctx, self.hwm, self._serializer, address, self._arena, self._name
        )
        closers.insert(0, receiver.close)
        return receiver


class MultiProcessRunner(_RunnerBase):
    """Yield the merged output of *num_proc* worker processes over a ``multiprocessing`` queue.

    The same as :class:`MultiProcessRunnerZMQ` (clones or exactly-once
    passes, errors, shutdown, seeds), but datapoints travel pickled through
    one ``multiprocessing.Queue`` of *num_prefetch* datapoints, which needs
    no ZeroMQ and stores any picklable object, at a lower speed. ``len()``
    is ``len(ds)`` (exactly-once: the sum of the shards).

    Args:
        ds: the dataflow to run.
        num_prefetch: capacity of the queue in datapoints, >= 1.
        num_proc: number of worker processes, >= 1.
        exactly_once: shard ``ds`` over the workers (see MultiProcessRunnerZMQ).
        seed: seeds every worker's random streams differently but reproducibly.
        start_method: ``'fork'`` (default where available), ``'spawn'`` or ``'forkserver'``.
        serializer: how datapoints are encoded (default ``PickleSerializer()``);
            the worker encodes, so an error names the datapoint's bad component.
        timeout: seconds to wait for the next datapoint before raising
            ``TimeoutError`` with each worker's current Python stack; time
            the caller spends between datapoints does not count (default
            ``None``: wait, and warn with the stacks after a minute of silence).

    Example:
        >>> df = MultiProcessRunner(DataFromList([[i] for i in range(4)], shuffle=False),
        ...                         num_prefetch=4, num_proc=1)
        >>> df.reset_state()
        >>> [dp[0] for dp in df]
        [0, 1, 2, 3]
        >>> df.close()
    """

    def __init__(
        self,
        ds: DataFlow,
        num_prefetch: int,
        num_proc: int,
        *,
        exactly_once: bool = False,
        seed: Optional[int] = None,
        start_method: Optional[str] = None,
        serializer: Optional[Serializer] = None,
        timeout: Optional[float] = None,
    ) -> None:
        super().__init__(ds)
        self.num_prefetch = check_int("num_prefetch", num_prefetch, 1, "a positive int")
        self.num_proc = self._num_workers = check_int("num_proc", num_proc, 1, "a positive int")
        self._start_method = check_start_method(start_method)
        self._serializer = _check_serializer(serializer) or PickleSerializer()
        self._setup_runner(exactly_once, seed, timeout)
        self._commands: List[Any] = []

    def _start(self) -> None:
        self._check_shards(self.ds)
        group = self._workers = ProcessGroup(self._name, self._start_method)
        q = group.context.Queue(self.num_prefetch)
        receiver = self._receiver = QueueReceiver(q, self._serializer)
        self._finalizer = weakref.finalize(self, run_finalizer, group, [receiver.close])
        worker_ends: List[Any] = [None] * self._num_workers
        if self._exactly_once:
            for i in range(self._num_workers):
                worker_ends[i], send_end = group.context.Pipe(duplex=False)
                self._commands.append(send_end)
        infos = self._infos()
        ds = self._portable(self.ds, self._start_method)
        args = [
            (
                ds,
                infos[i],
                q,
                group.stop_event,
                worker_ends[i],
                group.parent_pid,
                group.pdeathsig,
                self._serializer,
            )
            for i in range(self._num_workers)
        ]
        self._start_group(self._start_method, runner_queue_worker, args)


class MultiThreadRunner(_RunnerBase):
    """Yield the merged output of *num_thread* threads, each running its own dataflow.

    Each thread calls ``get_df()`` once to build its own dataflow, resets it
    in the thread, and puts its datapoints into one queue of *num_prefetch*
    datapoints. Threads suit sources that wait (I/O, network, a GIL-releasing
    decoder); nothing is serialized. Passes, exactly-once sharding, seeds
    and errors are as in :class:`MultiProcessRunnerZMQ`; ``len()`` is the
    length of one ``get_df()`` dataflow (exactly-once: the sum of the shards).

    Args:
        get_df: a function returning a new, not yet reset, dataflow each call.
        num_prefetch: capacity of the queue in datapoints, >= 1.
        num_thread: number of threads, >= 1.
        exactly_once: shard over the threads (see MultiProcessRunnerZMQ).
        seed: seeds every thread's random streams differently but reproducibly.
        timeout: seconds to wait for the next datapoint before raising
            ``TimeoutError`` with each worker's current Python stack; time
            the caller spends between datapoints does not count (default
            ``None``: wait, and warn with the stacks after a minute of silence).

    Example:
        >>> df = MultiThreadRunner(lambda: DataFromList([[i] for i in range(4)], shuffle=False),
        ...                        num_prefetch=2, num_thread=2, exactly_once=True)
        >>> df.reset_state()
        >>> sorted(dp[0] for dp in df)
        [0, 1, 2, 3]
        >>> df.close()

    Note:
        A thread blocked inside user code (e.g. a read that never returns)
        cannot be stopped; ``close()`` waits for each thread at most one second.
    """

    def __init__(
        self,
        get_df: Callable[[], DataFlow],
        num_prefetch: int,
        num_thread: int,
        *,
        exactly_once: bool = False,
        seed: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> None:
        self.get_df = check_callable("get_df", get_df)
        self.num_prefetch = check_int("num_prefetch", num_prefetch, 1, "a positive int")
        self.num_thread = self._num_workers = check_int(
            "num_thread", num_thread, 1, "a positive int"
        )
        self._setup_runner(exactly_once, seed, timeout)
        self._dfs: List[DataFlow] = []
        self._commands: List[Any] = []
        self._len_df: Optional[DataFlow] = None
        #: the first thread's dataflow, once started (``None`` before)
        self.ds: Optional[DataFlow] = None  # type: ignore[assignment]

    @property
    def parents(self) -> Tuple[DataFlow, ...]:  # type: ignore[override]
        """The first thread's dataflow once started, else the one ``len()`` built, else
        nothing: describing a pipeline never calls *get_df*."""
        if self._dfs:
            return (self._dfs[0],)
        return () if self._len_df is None else (self._len_df,)

    def _new_df(self, info: Union[WorkerInfo, WorkerState]) -> DataFlow:
        with worker_context(info):
            df = self.get_df()
        if not isinstance(df, DataFlow):
            raise TypeError(f"get_df must return a DataFlow, got {type(df).__name__}")
        return df

    def _len_source(self) -> DataFlow:
        """A dataflow of get_df() (the first thread's, once started) to ask for len()."""
        if self._dfs:
            return self._dfs[0]
        if self._len_df is None:
            self._len_df = self._new_df(WorkerInfo(0, 1))
        return self._len_df

    def _start(self) -> None:
        infos = self._infos()
        # Each thread runs as the worker its get_df() was called as: what get_df asked
        # (its shard) counts for the thread's own checks (dataflow.parallel._shards).
        states = [WorkerState(info) for info in infos]
        self._dfs = [self._new_df(state) for state in states]
        if len({id(df) for df in self._dfs}) != len(self._dfs):
            raise ValueError(
                "get_df must return a new dataflow on every call, but it returned the same one "
                "twice; e.g. get_df=lambda: DataFromList(items) instead of lambda: df"
            )
        self._check_shards(self._dfs[0])
        self.ds = self._dfs[0]
        group = self._workers = ThreadGroup(self._name)
        queue: Any = queue_module.Queue(self.num_prefetch)
        self._receiver = QueueReceiver(queue)
        self._commands = [queue_module.Queue() for _ in infos] if self._exactly_once else []
        closers = [df.close for df in self._dfs]
        self._finalizer = weakref.finalize(self, run_finalizer, group, closers)
        args = [
            (
                self._dfs[info.index],
                states[info.index],
                queue,
                group.stop_event,
                self._commands[info.index] if self._commands else None,
            )
            for info in infos
        ]
        self._start_threads(group, runner_thread_worker, args)

    def _check_shards(self, ds: DataFlow) -> None:
        if not self._exactly_once or self._num_workers == 1:
            return
        try:
            total = len(self._new_df(WorkerInfo(0, 1)))
            shards = self._shard_lengths_of_dfs()
        except UnknownLengthError:
            return
        if copies_everything(total, shards):
            raise ValueError(self._not_sharded(ds, sum(shards), total))

    def __len__(self) -> int:
        if self._exactly_once:
            return self._sharded_length()
        return len(self._len_source())

    def _shard_lengths_of_dfs(self) -> List[int]:
        lengths = []
        for info in self._infos():
            df = self._dfs[info.index] if self._dfs else self._new_df(info)
            with worker_context(info):
                lengths.append(len(df))
        return lengths

    def _sharded_length(self) -> int:
        return sum(self._shard_lengths_of_dfs())

    def _send_commands(self, epoch: int, resumes: List[Any]) -> None:
        for q, resume in zip(self._commands, resumes):
            q.put(epoch if resume is None else (epoch, resume))

    def _iterate(self) -> Iterator[Datapoint]:
        return self._iter_epoch() if self._exactly_once else self._iter_stream()


#: tensorpack's name of :class:`MultiProcessRunner`.
PrefetchData = MultiProcessRunner
#: tensorpack's name of :class:`MultiProcessRunner`.
MultiProcessPrefetchData = MultiProcessRunner
#: tensorpack's name of :class:`MultiProcessRunnerZMQ`.
PrefetchDataZMQ = MultiProcessRunnerZMQ
#: tensorpack's name of :class:`MultiThreadRunner`.
MultiThreadPrefetchData = MultiThreadRunner
