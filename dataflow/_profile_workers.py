"""What :func:`dataflow.profile` learns from inside worker processes and threads.

A parallel dataflow started while ``profile`` resets its pipeline
(:func:`workers_profiled`) starts its workers through :func:`profiled_worker`,
which times, in the worker, what the worker runs: a runner's dataflow (every
stage, every datapoint, as ``profile`` times the consumer's) or a mapper's
function. A worker thread's :class:`WorkerProfile` is read by the consumer
directly; a worker process writes a snapshot of its own on a
:class:`StatsBoard`, shared memory made by the consumer, every ``STATS_S``
seconds (:func:`start_stats`). A board is never full and never waits, so
the statistics arrive whatever the data does (a consumer that is behind,
a queue at its high-water mark).

The statistics of one worker (:meth:`WorkerProfile.snapshot`), plain data:
``{"wall": seconds since the worker began to work, "waiting": seconds of
those it waited for room to send or for tasks, "cpu": CPU seconds of its
process or thread (or ``None``), "stages": [[datapoints, seconds,
bytes_out], ...]}`` with one entry per stage of the worker's dataflow in
the order of :func:`dataflow._timing.walk` (for a mapper, one entry: its
function), ``None`` for a stage the worker did not time.

Nothing here runs unless ``profile`` asked: workers of a pipeline that is
not being profiled start as they always did.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import threading
import time
import zlib
from typing import Any, Callable, Dict, Iterator, List, Optional

from ._timing import Counter, Run, instrument, nbytes, restore, walk

__all__ = [
    "STATS_S",
    "StatsBoard",
    "WorkerProfile",
    "profiled_worker",
    "requested",
    "current",
    "stage_count",
    "start_stats",
    "worker_begins",
    "workers_profiled",
]

# How often a profiled worker process writes its statistics, and looks whether the
# consumer asks for them now.
STATS_S = 0.1
_LOOK_S = 0.01

_requested = False
_local = threading.local()  # the WorkerProfile of the worker running in this thread


def _forget_in_child() -> None:
    """A process forked from a worker being profiled (or while profile() reset the
    pipeline) is not that worker: it starts untimed (see profiled_worker)."""
    global _requested
    _requested = False
    _local.profile = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def requested() -> bool:
    """Whether parallel dataflows started now should profile their workers."""
    return _requested


@contextlib.contextmanager
def workers_profiled() -> Iterator[None]:
    """Within the block, parallel dataflows that start profile their workers."""
    global _requested
    _requested = True
    try:
        yield
    finally:
        _requested = False


class WorkerProfile:
    """The timing of one worker: its dataflow's stages (*ds*), or its function
    (:meth:`timed_func`)."""

    def __init__(self, ds: Any = None) -> None:
        # When the worker began to work: its first datapoint or task (see begin()).
        self.start: Optional[float] = None
        # Seconds spent since then waiting for tasks (a mapper's); the time its
        # sender waits for room is added from the sender (watch()).
        self.waiting = 0.0
        self._blocked_before = 0.0
        self._cpu_before = 0.0
        # The CPU time of this worker: of its process, or of its thread (read from
        # the consumer's thread too, where the snapshots of worker threads are taken).
        self.in_thread = threading.current_thread() is not threading.main_thread()
        self._cpu_clock: Optional[int] = None
        if self.in_thread and hasattr(time, "pthread_getcpuclockid"):
            try:
                self._cpu_clock = time.pthread_getcpuclockid(threading.get_ident())
            except OSError:  # pragma: no cover - no per-thread clock here
                self._cpu_clock = None
        self.run = Run()
        self.run.always = True
        self.run.thread = threading.get_ident()
        self.counters: List[Optional[Any]] = []
        self._swapped: List[Any] = []
        self.board: Optional[StatsBoard] = None  # a worker process's (see profiled_worker)
        self.index = 0
        self.finished = False  # profile() has ended: time no more (see finish())
        if ds is not None:
            stages = walk(ds)
            instrument(stages, self.run, self._swapped)
            self.counters = [
                None if s.where == "worker" else self.run.counters.get(id(s.df)) for s in stages
            ]

    def timed_func(self, func: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """*func*, counted and timed (a mapper's function)."""
        counter = Counter()
        self.counters = [counter]
        perf = time.perf_counter

        def timed(dp: Any) -> Any:
            if self.finished:
                return func(dp)
            begin = perf()
            if self.start is None:
                self.begin()
            result = func(dp)
            counter.seconds += perf() - begin
            counter.datapoints += 1
            counter.timed += 1
            if result is not None:
                counter.bytes_out += nbytes(result)
            return result

        return timed

    def _cpu(self) -> Optional[float]:
        if not self.in_thread:
            return time.process_time()
        if self._cpu_clock is None:
            return None
        try:
            return time.clock_gettime(self._cpu_clock)
        except OSError:  # the thread has ended
            return None

    def begin(self) -> None:
        """The worker begins to work (once it had its first task or pass): its clock starts."""
        if self.start is None:
            self.start = time.perf_counter()
            self._blocked_before = self._blocked()
            self._cpu_before = self._cpu() or 0.0

    def snapshot(self) -> Dict[str, Any]:
        stages: List[Any] = []
        for c in self.counters:
            stages.append(None if c is None else [c.datapoints, c.seconds, c.bytes_out])
        if self.start is None:
            return {"wall": 0.0, "waiting": 0.0, "cpu": None, "stages": stages}
        waiting = self.waiting + self._blocked() - self._blocked_before
        cpu = self._cpu()
        return {
            "wall": time.perf_counter() - self.start,
            "waiting": waiting,
            "cpu": None if cpu is None else cpu - self._cpu_before,
            "stages": stages,
        }

    def watch(self, sender: Any) -> None:
        """Count the time *sender* waits for room (in the consumer's queue, or in
        the shared-memory arena) as the worker's waiting."""
        self._sender = sender

    def _blocked(self) -> float:
        sender = getattr(self, "_sender", None)
        if sender is None:
            return 0.0
        shm = getattr(getattr(sender, "packer", None), "shm", None)
        # What it waited, and since when it waits now (read in this order, a wait
        # that ends in between is missed, never counted twice).
        blocked = sender.blocked_s
        since = sender.blocked_since
        now = time.monotonic() - since if since else 0.0
        return blocked + now + (shm.blocked_s if shm is not None else 0.0)

    def restore(self) -> None:
        restore(self._swapped)
        self._swapped = []

    def finish(self) -> None:
        """Stop timing (``profile`` has ended): the stages get their classes back,
        iterators already running stop timing, and the function is called as is."""
        self.finished = True
        self.run.always = False
        self.restore()


class StatsBoard:
    """The latest statistics of each of *workers* worker processes, in shared memory.

    Worker *i* writes its row (:meth:`write`); the consumer reads all rows
    (:meth:`read`). A row: a sequence number (odd while being written),
    wall, waiting and CPU seconds (NaN: unknown), the last request it
    answered, then datapoints, seconds and bytes of each of *stages* stages
    (datapoints -1: not timed), and last a checksum of the cells between. A
    reader that finds a row being written, changed under it, or not matching
    its checksum (a processor that reorders stores may show the new sequence
    number before the new cells) reads again. After the rows, two cells of
    the consumer's: profiling has ended (:meth:`finish`), and the number of
    its last request for fresh rows (:meth:`refresh`).
    """

    _HEAD = 5

    def __init__(self, workers: int, stages: int, context: Any = None) -> None:
        import multiprocessing

        ctx = context if context is not None else multiprocessing.get_context()
        self.workers, self.stages = workers, stages
        self.stride = self._HEAD + 3 * stages + 1  # the checksum last
        self.cells = ctx.RawArray("d", workers * self.stride + 2)
        self._end = workers * self.stride

    @property
    def finished(self) -> bool:
        return bool(self.cells[self._end])

    def finish(self) -> None:
        """Tell the workers that profiling has ended: they stop timing."""
        self.cells[self._end] = 1.0

    @property
    def request(self) -> float:
        return float(self.cells[self._end + 1])

    def refresh(self, timeout_s: float) -> None:
        """Ask the workers for fresh rows, and wait up to *timeout_s* for them all to
        answer (a worker that has not begun answers with an empty row)."""
        request = self.cells[self._end + 1] = self.request + 1
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.cells[b + 4] >= request for b in range(0, self._end, self.stride)):
                return
            time.sleep(0.005)

    def write(self, worker: int, snapshot: Dict[str, Any], answered: float = 0.0) -> None:
        cells, base = self.cells, worker * self.stride
        cells[base] += 1  # odd: being written
        cpu = snapshot["cpu"]
        cells[base + 1] = snapshot["wall"]
        cells[base + 2] = snapshot["waiting"]
        cells[base + 3] = math.nan if cpu is None else cpu
        cells[base + 4] = answered
        at = base + self._HEAD
        for entry in snapshot["stages"][: self.stages]:
            cells[at : at + 3] = [-1.0, 0.0, 0.0] if entry is None else entry
            at += 3
        last = base + self.stride - 1
        cells[last] = _checksum(cells[base + 1 : last])
        cells[base] += 1

    def read(self) -> List[Dict[str, Any]]:
        """The rows of the workers that wrote one, as snapshots."""
        found = []
        for worker in range(self.workers):
            base = worker * self.stride
            if self.cells[base] == 0:  # the worker has not written yet
                continue
            for _ in range(10):
                seq = self.cells[base]
                row = self.cells[base : base + self.stride]
                whole = row[-1] == _checksum(row[1:-1])
                if seq % 2 == 0 and self.cells[base] == seq and whole:
                    break
                time.sleep(0.001)
            else:  # a writer killed mid-row
                continue
            if row[1] == 0:  # the worker has not begun
                continue
            stages = [
                None if row[i] < 0 else [int(row[i]), row[i + 1], int(row[i + 2])]
                for i in range(self._HEAD, self.stride - 1, 3)
            ]
            cpu = None if math.isnan(row[3]) else row[3]
            found.append({"wall": row[1], "waiting": row[2], "cpu": cpu, "stages": stages})
        return found


def _checksum(cells: List[float]) -> float:
    """A CRC-32 of the bytes of *cells* (as a float: exact)."""
    return float(zlib.crc32(struct.pack(f"{len(cells)}d", *cells)))


def stage_count(kind: str, parallel: Any) -> int:
    """How many stages each worker of *parallel* (a runner or a mapper) times."""
    if kind != "runner" or not parallel.parents:
        return 1
    return len(walk(parallel.parents[0]))


def profiled_worker(
    target: Callable[..., None],
    kind: str,
    sink: Optional[Dict[int, Any]],
    board: Optional[StatsBoard],
    *args: Any,
) -> None:
    """Run worker ``target(*args)`` with what it runs timed: a runner's dataflow
    (*kind* ``"runner"``) or a mapper's function (``"mapper"``), which every
    entry point takes just before its :class:`~dataflow.worker.WorkerInfo` (or the
    worker state that holds it, for a runner's thread).
    A thread leaves its :class:`WorkerProfile` in *sink*, under its worker
    index; a process writes it on *board* (:func:`start_stats`)."""
    from ._worker_state import WorkerState
    from .worker import WorkerInfo

    args_list = list(args)
    at = next(i for i, a in enumerate(args_list) if isinstance(a, (WorkerInfo, WorkerState)))
    where = args_list[at]
    index = (where.info if isinstance(where, WorkerState) else where).index
    if kind == "runner":
        profile = WorkerProfile(args_list[at - 1])
    else:
        profile = WorkerProfile()
        args_list[at - 1] = profile.timed_func(args_list[at - 1])
    profile.board, profile.index = board, index
    if sink is not None:
        sink[index] = profile
    _local.profile = profile
    try:
        target(*args_list)
    finally:
        _local.profile = None
        profile.restore()


class _StatsThread:
    """Writes the statistics of this process's worker on its board every ``STATS_S`` s."""

    def __init__(self, profile: WorkerProfile) -> None:
        self.profile = profile
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dataflow-profile-stats", daemon=True)
        self.thread.start()

    def _write(self, answered: float = 0.0) -> None:
        profile = self.profile
        if profile.board is not None and (profile.start is not None or answered):
            profile.board.write(profile.index, profile.snapshot(), answered)

    def _run(self) -> None:
        board = self.profile.board
        assert board is not None
        answered, written = 0.0, time.monotonic()
        while not self.stop_event.wait(_LOOK_S):
            request, now = board.request, time.monotonic()
            if request != answered or now - written >= STATS_S:
                self._write(request)
                answered, written = request, now
            if board.finished:
                self.profile.finish()  # the worker's loop runs on, untimed
                return

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join()
        self._write()  # the last word


class _NoStats:
    def stop(self) -> None:
        pass


def start_stats(sender: Any) -> Any:
    """In a worker being profiled: count the time *sender* waits for room as the
    worker's waiting, and in a worker process, write its statistics on the board
    now and then. Returns an object whose ``stop()`` ends that (call it when the
    worker stops)."""
    profile = getattr(_local, "profile", None)
    if profile is None:
        return _NoStats()
    profile.watch(sender)
    return _StatsThread(profile) if profile.board is not None else _NoStats()


def current() -> Optional[WorkerProfile]:
    """The profile of the worker that runs in this thread, if it is being profiled."""
    return getattr(_local, "profile", None)


def worker_begins() -> None:
    """A runner's worker begins a pass: if it is being profiled, its clock starts
    (a mapper's starts at its first task)."""
    profile = getattr(_local, "profile", None)
    if profile is not None:
        profile.begin()
