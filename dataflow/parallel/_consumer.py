"""The consumer side of every parallel dataflow: start once, watch workers, fail clearly.

A parallel dataflow *holds* a worker group (:class:`~._workers.ProcessGroup`
or :class:`~._workers.ThreadGroup`, in ``self._workers``) and a receiver
(a :class:`dataflow._transport.Receiver`, in ``self._receiver``), both made
in its ``_start()``; :class:`ParallelBase` does the rest the same way for
all of them: the reentrancy guard, the liveness checks, turning error
reports into exceptions, stalls and timeouts, and closing from any thread.
A subclass provides only ``_start()`` and ``_iterate()``.
"""

from __future__ import annotations

import pickle
import threading
import time
import warnings
import weakref
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import cloudpickle

from .. import _profile_workers
from .._checks import check_int, check_timeout
from .._rng import child_seed
from .._rng import shared_seed as _shared_seed
from .._state import ResumeNotSupportedError
from .._transport import ERROR, Arena, Message, SharedMemoryWarning, create_arena
from .._worker_state import current_state
from ..base import DataFlowReentrantGuard, DataFlowTerminated, Datapoint, ProxyDataFlow
from ..worker import WorkerInfo
from ._errors import WorkerError, worker_error
from ._workers import (
    _LAST_WORDS_S,
    _LIVENESS_INTERVAL_S,
    _POLL_S,
    _sigint_held,
    check_worker_seed,
    worker_seeds,
)

# Without timeout=, a consumer that waited this long without a datapoint warns, once per stall.
_STALL_WARNING_S = 60.0


class ParallelBase(ProxyDataFlow):
    """Start in ``reset_state()``, iterate under a reentrancy guard, turn worker
    failures into exceptions (then stop every worker), close once.

    ``_start()`` sets ``self._workers`` (a started worker group),
    ``self._receiver`` and ``self._finalizer`` (which stops the group and
    releases the transport); ``_iterate()`` yields datapoints, taking
    messages from :meth:`_next_message` or :meth:`_poll_message`.
    """

    _num_workers: int
    _sharded = False
    #: what its workers run, for profiling: a dataflow ("runner") or a function ("mapper")
    _work_kind = "runner"
    _workers: Any = None  # a ProcessGroup or a ThreadGroup, once started
    _receiver: Any = None  # a dataflow._transport.Receiver, once started

    def _setup(self, seed: Any, timeout: Any = None) -> None:
        self._seed = check_worker_seed(seed)
        self.timeout: Optional[float] = _check_timeout(timeout)
        self._guard = DataFlowReentrantGuard(type(self).__name__)
        self._started = False
        self._closed = False
        self._released = False
        self._failure: Optional[str] = None  # the first line of what failed
        self._next_check = 0.0
        self._finalizer: Optional[weakref.finalize] = None
        # Held by the thread that runs the iteration while it uses the transport (not
        # while the caller holds a datapoint), so that close() from another thread
        # never closes a socket under it: ZeroMQ sockets belong to one thread.
        self._transport_lock = threading.RLock()
        self._waiting_since = 0.0  # when the consumer last got a message or a datapoint out
        self._stall_warned = False
        # Profiling (dataflow.profile, which asks before it resets the pipeline): the
        # board the worker processes write their statistics on, the profiles of
        # worker threads, and how often the consumer found a message waiting when it
        # looked for one.
        self._profiled = False
        self._stats_board: Any = None
        self._worker_profiles: Dict[int, Any] = {}
        self._looked = 0
        self._found_waiting = 0
        self._in_wait = False

    @property
    def _name(self) -> str:
        return type(self).__name__

    # The states of the dataflows that run in the workers are the parallel dataflow's
    # own part of a state (dataflow._state): the parents in this process never iterate.
    _STATE_HOLDS_PARENTS = True

    def own_state_dict(self) -> Any:
        # Each runner and mapper says how (dataflow.parallel._resume), or why not.
        raise ResumeNotSupportedError(f"{self._name} cannot save its position")

    def load_own_state_dict(self, state: Any) -> None:
        self.own_state_dict()

    @property
    def keeps_order(self) -> bool:
        """Whether the output order is repeatable: one worker, or a mapper with
        ``ordered=True``; several workers otherwise merge as results arrive."""
        return self._num_workers == 1 or bool(getattr(self, "ordered", False))

    @property
    def exactly_once(self) -> bool:
        """Whether the workers each read their own shard (one pass = every datapoint once)."""
        return self._sharded

    def _infos(self) -> List[WorkerInfo]:
        n = self._num_workers
        if getattr(self, "_shared_seed", None) is None:  # once per runner: all workers agree
            self._shared_seed = _shared_seed(self._seed)
        outer = current_state()
        if self._sharded and outer is not None and outer.info.sharded:
            outer.asked = True  # its workers split this worker's shard
            return _nested_infos(outer.info, self._seed, self._shared_seed, n)
        seeds = worker_seeds(self._seed, n)
        return [WorkerInfo(i, n, seeds[i], self._sharded, self._shared_seed) for i in range(n)]

    # -- the contract -----------------------------------------------------------------

    def reset_state(self) -> None:
        if self._closed:
            raise RuntimeError(
                f"{self._name} was closed; build a new one instead of calling reset_state() again"
            )
        if self._started:
            raise RuntimeError(
                f"{self._name}.reset_state() was called twice; call it once, in the process "
                "that iterates (its workers are already running)"
            )
        self._started = True
        try:
            # A Ctrl-C meanwhile is raised when the start is done (then undone): raised
            # inside the compiled code of ZeroMQ or numpy, it could be lost.
            with _sigint_held():
                self._start()
        except BaseException:
            self.close()
            raise
        self._next_check = time.monotonic() + _LIVENESS_INTERVAL_S

    def __iter__(self) -> Iterator[Datapoint]:
        self._check_usable()
        with self._guard:
            lock = self._transport_lock
            lock.acquire()
            inner: Any = self._iterate()
            try:
                self._check_open()
                self._waiting_since = time.monotonic()
                for dp in inner:
                    lock.release()
                    try:
                        yield dp
                    finally:
                        lock.acquire()
                    self._check_open()
                    self._waiting_since = time.monotonic()
            except (WorkerError, TimeoutError) as err:
                self._fail(err)
                raise
            finally:
                try:
                    inner.close()
                finally:
                    lock.release()

    def _check_open(self) -> None:
        """Raise :class:`DataFlowTerminated` if ``close()`` was called (from another
        thread) during this iteration; first release the transport, which that
        thread left to this one."""
        if not self._closed:
            return
        self._release()
        raise DataFlowTerminated(
            f"{self._name} was closed while it was being iterated (by close(), perhaps from "
            "another thread); its workers are stopped. Build a new one to iterate again"
        )

    def _check_usable(self) -> None:
        if self._failure is not None:
            first_line = self._failure
            raise RuntimeError(
                f"{self._name} stopped after a worker failed ({first_line}); build a new one"
            )
        if self._closed:
            raise RuntimeError(f"{self._name} was closed; build a new one to iterate again")
        if not self._started:
            raise RuntimeError(
                f"{self._name} must be reset before iterating: call reset_state() once, in the "
                "process that iterates"
            )

    def _fail(self, err: BaseException) -> None:
        # Only its words: the exception's traceback holds the frames of the iteration,
        # and with them datapoints whose memory (e.g. shared memory) should be freed.
        self._failure = (str(err).splitlines() or [type(err).__name__])[0]
        self.close()

    def close(self) -> None:
        """Stop the workers (ask, wait, then terminate) and release the sockets; idempotent.

        Safe from any thread: while another thread is inside an iteration,
        this stops the workers, and that thread releases the transport and
        raises :class:`~dataflow.DataFlowTerminated` within a fraction of a second.
        """
        if self._closed:
            return
        self._closed = True
        if not self._started:
            return
        if self._transport_lock.acquire(blocking=False):
            try:
                self._release()
            finally:
                self._transport_lock.release()
        else:  # another thread is receiving: it sees _closed and releases the transport
            self._stop_workers()

    def _release(self) -> None:
        """Stop the workers and release the transport; in the thread that iterates, or
        while none does. Once."""
        if self._released:
            return
        self._released = True
        if self._finalizer is not None:
            self._finalizer()

    def _stop_workers(self) -> None:
        """Stop the workers without touching the transport (safe from any thread)."""
        if self._workers is not None:
            self._workers.stop()

    # -- receiving --------------------------------------------------------------------

    def _next_message(self) -> Message:
        """The next data or end message; raises for a worker's error or death."""
        while True:
            message = self._poll_message()
            if message is not None:
                return message

    def _poll_message(self) -> Optional[Message]:
        """The next data or end message, or ``None`` after a short wait without one."""
        if self._profiled:
            message = self._profiled_recv()
        else:
            message = self._receiver.recv(_POLL_S)
        self._check_open()
        now = time.monotonic()
        if message is None or now >= self._next_check:
            self._next_check = now + _LIVENESS_INTERVAL_S
            self._check_workers()
        if message is None:
            self._check_stall(now)
            return None
        self._waiting_since = now
        self._stall_warned = False
        if message.kind == ERROR:
            self._raise_error(message)
        return message

    def _profiled_recv(self) -> Optional[Message]:
        """Receive as :meth:`_poll_message` does, keeping the workers' statistics and
        counting whether a message was there when the consumer began to look."""
        message = self._receiver.recv(0)
        if not self._in_wait:
            self._looked += 1
            if message is not None:
                self._found_waiting += 1
        if message is None:
            self._in_wait = True
            message = self._receiver.recv(_POLL_S)
        if message is not None:
            self._in_wait = False
        return message

    def _entry(self, target: Callable[..., None], args: List[tuple], sink: Any) -> Tuple[Any, Any]:
        """The workers' entry point and arguments: as given, or timed inside the
        workers when :func:`dataflow.profile` is starting this pipeline (worker
        threads leave their profiles in *sink*; processes write on a board)."""
        self._profiled = _profile_workers.requested()
        if not self._profiled:
            return target, args
        board = None
        if sink is None:
            context = getattr(self._workers, "context", None)
            board = self._stats_board = _profile_workers.StatsBoard(
                len(args), _profile_workers.stage_count(self._work_kind, self), context
            )
        wrapped = [(target, self._work_kind, sink, board, *entry) for entry in args]
        return _profile_workers.profiled_worker, wrapped

    def _start_threads(self, group: Any, target: Callable[..., None], args: List[tuple]) -> None:
        group.start(*self._entry(target, args, self._worker_profiles))

    def _fresh_statistics(self) -> None:
        """Have the worker processes write their statistics now (waits 0.3 s at most)."""
        if self._stats_board is not None:
            self._stats_board.refresh(0.3)

    def _end_profiling(self) -> None:
        """:func:`dataflow.profile` has ended: the workers stop timing."""
        self._profiled = False
        if self._stats_board is not None:
            self._stats_board.finish()
        for profile in list(self._worker_profiles.values()):
            profile.finish()

    def worker_statistics(self) -> List[Dict[str, Any]]:
        """The latest statistics of each worker that has begun to work, when
        :func:`dataflow.profile` started this dataflow (else an empty list); see
        :mod:`dataflow._profile_workers`."""
        if self._stats_board is not None:
            return self._stats_board.read()
        return [p.snapshot() for _, p in sorted(self._worker_profiles.items()) if p.start]

    def _check_workers(self) -> None:
        """Raise if a worker died; first look briefly for the error it may have sent."""
        dead = self._workers.dead()
        if dead is None:
            return
        deadline = time.monotonic() + _LAST_WORDS_S
        while time.monotonic() < deadline:
            message = self._receiver.recv(0.05)
            if message is not None and message.kind == ERROR:
                self._raise_error(message)
            message = None  # its datapoints must not live on in the traceback
        self._check_open()  # stopped by close() from another thread, not dead by itself
        raise self._workers.died_error(dead)

    def _raise_error(self, message: Message) -> None:
        report = message.payload
        original = type(report[3]) if len(report) > 3 else None  # a thread's own exception
        pid = self._workers.pid(message.worker)
        err = worker_error(self._name, message.worker, pid, report[:3], original)
        if len(report) > 3:
            raise err from report[3]
        raise err

    # -- stalls -----------------------------------------------------------------------

    def _check_stall(self, now: float) -> None:
        """Raise TimeoutError after *timeout* s without a message; without a timeout,
        warn once per stall after a minute."""
        waited = now - self._waiting_since
        if self.timeout is not None and waited >= self.timeout:
            raise TimeoutError(
                f"{self._name} received no datapoint for {waited:.1f} s (timeout="
                f"{self.timeout:g}); its workers are stopped. Where each worker was:\n\n"
                + self._where_workers_are()
            )
        if self.timeout is None and not self._stall_warned and waited >= _STALL_WARNING_S:
            self._stall_warned = True
            warnings.warn(
                f"{self._name} has received no datapoint for {waited:.0f} s; its workers may "
                "be stuck (pass timeout= to raise instead). Where each worker is:\n\n"
                + self._where_workers_are(),
                StallWarning,
                stacklevel=2,
            )

    def _where_workers_are(self) -> str:
        parts = []
        for index, pid, stacks in self._worker_stacks():
            where = f"worker {index}" + (f" (pid {pid})" if pid is not None else "")
            if stacks is None:
                parts.append(f"{where}: ended")
            elif not stacks.strip():
                parts.append(f"{where}: alive, its stack could not be read")
            else:
                parts.append(f"{where}:\n{stacks.rstrip()}")
        return "\n\n".join(parts)

    def _worker_stacks(self) -> Sequence[Tuple[int, Optional[int], Optional[str]]]:
        """``(index, pid, Python stacks or None if it ended)`` of every worker."""
        return self._workers.stacks()  # type: ignore[no-any-return]

    # -- what each parallel dataflow provides ---------------------------------------------

    def _start(self) -> None:
        """Start the workers; set ``_workers``, ``_receiver`` and ``_finalizer``."""
        raise NotImplementedError

    def _iterate(self) -> Iterator[Datapoint]:
        """Yield one pass of datapoints, taking messages from :meth:`_next_message`."""
        raise NotImplementedError

    # -- starting worker processes ------------------------------------------------------

    def _setup_shm(self, shm: Any, shm_bytes: Any) -> None:
        if shm not in (None, True, False):
            raise TypeError(f"shm must be True, False or None, got {shm!r}")
        if shm_bytes is not None:
            check_int("shm_bytes", shm_bytes, 1, "a positive int (bytes) or None")
        if shm and getattr(self, "_serializer", None) is not None:
            raise ValueError(
                "shm=True needs the built-in wire format, which sends arrays as such; a "
                "serializer sends bytes. Pass shm=None or leave out serializer"
            )
        self.shm = shm
        self.shm_bytes = shm_bytes

    def _new_arena(self, serializer: Any, closers: List[Callable[[], None]]) -> Optional[Arena]:
        """The shared-memory arena of this dataflow's workers, or ``None`` (frames)."""
        if self.shm is False or serializer is not None:
            return None  # a serializer's bytes never hold arrays for the arena
        arena, why = create_arena(self._num_workers, self.shm_bytes)
        if arena is None:
            if self.shm or "platform" not in why:
                warnings.warn(
                    f"{self._name}: large arrays travel through ZeroMQ frames instead of "
                    f"shared memory: {why}",
                    SharedMemoryWarning,
                    stacklevel=4,
                )
            return None
        closers.append(arena.close)
        return arena

    def _portable(self, obj: Any, start_method: str) -> Any:
        """*obj* as the workers get it: itself under fork; else pickled once with
        cloudpickle (so lambdas and local functions work), or the TypeError saying
        what cannot be pickled and what to do."""
        if start_method == "fork":
            return obj
        try:
            return _Pickled(cloudpickle.dumps(obj))
        except Exception as err:
            raise self._pickling_error(start_method, err) from err

    def _pickling_error(self, start_method: str, err: BaseException) -> TypeError:
        return TypeError(
            f"{self._name} with start_method={start_method!r} must pickle its dataflow "
            f"and functions to send them to its workers, which failed: {err}. Use "
            "start_method='fork', or make them picklable: open files, locks, sockets, "
            "generators and the like must be created in reset_state(), not in __init__"
        )

    def _start_group(
        self, start_method: str, target: Callable[..., None], args: List[tuple]
    ) -> None:
        assert self._workers is not None
        try:
            self._workers.start(*self._entry(target, args, None))
        except Exception as err:
            if start_method != "fork" and "pickl" in f"{type(err).__name__} {err}".lower():
                raise self._pickling_error(start_method, err) from err
            raise


def _nested_infos(
    outer: WorkerInfo, seed: Optional[int], own_shared: int, n: int
) -> List[WorkerInfo]:
    """The infos of *n* exactly-once workers started by code that itself reads
    only shard *outer* (e.g. one rank of a distributed job): worker *i* reads
    part *i* of that shard, i.e. shard ``j * n + i`` of ``m * n`` when the outer
    shard is *j* of *m*, with the shared seed every shard agrees on.
    Worker seeds come from the runner's *seed* and the outer shard, so no two
    shards repeat each other's random streams."""
    shard, shards = outer.part
    base = child_seed(seed, shard) if seed is not None else outer.seed
    seeds = worker_seeds(base, n)
    shared = outer.shared_seed if outer.shared_seed is not None else own_shared
    return [
        WorkerInfo(i, n, seeds[i], True, shared, shard_index=shard * n + i, num_shards=shards * n)
        for i in range(n)
    ]


class _Pickled:
    """An object pickled once with cloudpickle; unpickling gives the object itself."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> Any:
        return (pickle.loads, (self.data,))


class StallWarning(RuntimeWarning):
    """Warned when a parallel dataflow without ``timeout=`` waits a minute for a datapoint."""


def _check_timeout(timeout: Any) -> Optional[float]:
    return check_timeout("timeout", timeout)
