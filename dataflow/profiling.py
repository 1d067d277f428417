"""Find the stage that limits a pipeline: :func:`profile` runs it and names it.

``profile(df)`` iterates *df* for a while with every stage of the consuming
process timed, and returns a :class:`ProfileReport`: per stage, the
datapoints it produced, its own time per datapoint (time in the stage minus
time waiting for its input), its share of the wall time and the bytes it
produced; and a verdict, :attr:`ProfileReport.bottleneck`, with what to do.

Nothing is timed unless you ask: while it runs, ``profile`` gives each
stage a subclass of its own class whose ``__iter__`` counts and times the
original one, and puts the original class back when it returns or fails. A
pipeline that is not being profiled runs exactly the code it ran before.
The stages are clocked for the first moments of the run; then a counter in
C counts their datapoints and a timer signal samples the stack to see whose
code runs (see :mod:`dataflow._timing`), which costs a few percent at most.

A parallel dataflow (a runner or a mapper) is a stage whose own time is
the time the consumer waits for its workers. When ``profile`` resets the
pipeline, the workers it starts time what they run (a runner's input, every
stage of it; a mapper's function) and hand their numbers back (see
:mod:`dataflow._profile_workers`), with how busy the workers were, how many
CPUs they used and how often their output was ready: the verdict can then
name a slow stage inside the workers.
"""

from __future__ import annotations

import math
import random
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import _timing
from ._checks import check_int as _check_int
from ._profile_verdict import Bottleneck, machine_cpu_times, verdict, worker_rows
from ._profile_workers import workers_profiled
from ._sampler import StackSampler
from ._timing import Node, Run, instrument, restore, walk
from .base import DataFlow, was_reset
from .graph import _one_line, _parallelism, _workers

__all__ = ["ProfileReport", "Stage", "Bottleneck", "profile"]

_INDENT = "  "
# Held while profile() runs: one run at a time in the process (the stages read one
# global switch, dataflow._timing.timing_on).
_ONE_AT_A_TIME = threading.Lock()
_BAR_WIDTH = 20


class Stage:
    """One dataflow of a profiled pipeline and what it did.

    Attributes:
        df: the dataflow.
        name: its ``repr`` on one line.
        depth: its level below the profiled dataflow (0 for that one).
        where: ``"consumer"`` (runs in this process), ``"parallel"`` (a
            runner or mapper: its own time is the wait for its workers) or
            ``"worker"`` (runs in worker processes or threads; its numbers
            add up those of all the workers). A mapper's function appears as
            a stage of its own, ``"worker"``, whose *df* is the mapper.
        datapoints: how many it produced (``None`` if not measured).
        seconds: its own time in total: time in the stage minus time
            waiting for its input (``None`` if not measured); for a stage
            in workers, the sum over the workers.
        bytes_out: ``nbytes`` of the numpy arrays (and ``len`` of the
            ``bytes``) among the components of what it produced.
        share: *seconds* as a fraction of the wall time of the run; for a
            stage in workers, of the workers' time (their number times the
            wall time).
        workers: for a parallel stage, how many workers reported statistics.
        busy: for a parallel stage, the share of its workers' time not spent
            waiting: for room to send their output (the consumer is behind)
            or for tasks (a mapper's input is behind). Near 1: the workers
            limit the pipeline.
        ready: for a parallel stage, the share of the times the consumer
            looked for the workers' output that it found some waiting: the
            output buffer was not empty. Near 0: the consumer waits.
        cpus: for a parallel stage, how many CPUs its workers used together
            (CPU time over wall time). Worker threads that run Python code
            use about one at most: Python's GIL runs them one at a time.
    """

    def __init__(self, df: DataFlow, depth: int, where: str, name: Optional[str] = None) -> None:
        self.df = df
        self.name = _one_line(df) if name is None else name
        self.depth = depth
        self.where = where
        self.datapoints: Optional[int] = None
        self.seconds: Optional[float] = None
        self.bytes_out: Optional[int] = None
        self.share: Optional[float] = None
        self.workers: Optional[int] = None
        self.busy: Optional[float] = None
        self.ready: Optional[float] = None
        self.cpus: Optional[float] = None
        self.note = ""
        # The note before any worker statistics (they are added again on each report).
        self._plain_note: Optional[str] = None

    @property
    def measured(self) -> bool:
        return self.seconds is not None

    @property
    def seconds_per_datapoint(self) -> Optional[float]:
        if self.seconds is None or not self.datapoints:
            return None
        return self.seconds / self.datapoints

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "class": type(self.df).__name__,
            "depth": self.depth,
            "where": self.where,
            "datapoints": self.datapoints,
            "seconds": self.seconds,
            "seconds_per_datapoint": self.seconds_per_datapoint,
            "share": self.share,
            "bytes_out": self.bytes_out,
            "workers": self.workers,
            "busy": self.busy,
            "ready": self.ready,
            "cpus": self.cpus,
            "note": self.note,
        }

    def __repr__(self) -> str:
        return f"Stage({self.name}, share={self.share})"


class ProfileReport:
    """What :func:`profile` measured; ``print(report)`` draws it.

    Attributes:
        stages: every dataflow of the pipeline, in the order of
            :func:`~dataflow.describe` (the profiled one first).
        wall_seconds: how long the run took.
        datapoints: how many datapoints the profiled dataflow yielded.
        bottleneck: the :class:`Bottleneck`, or ``None`` if nothing was
            produced.
        machine_busy: the share of this machine's CPU time (all CPUs, all
            processes) that was busy during the run, or ``None`` where it
            cannot be read (Linux only). Near 1: the CPUs were all taken.
        clocked_seconds: how long, from the start, the stages of this
            process were clocked (a sample of the datapoints timed in every
            stage: exact own times). For the rest of the run their own times
            come from *samples* looks at the stacks of this process, which
            cost far less (see :func:`profile`).
        samples: how many times the stacks were looked at.
    """

    def __init__(
        self,
        stages: List[Stage],
        wall_seconds: float,
        datapoints: int,
        machine_busy: Optional[float] = None,
        clocked_seconds: Optional[float] = None,
        samples: int = 0,
    ) -> None:
        self.stages = stages
        self.wall_seconds = wall_seconds
        self.datapoints = datapoints
        self.machine_busy = machine_busy
        self.clocked_seconds = wall_seconds if clocked_seconds is None else clocked_seconds
        self.samples = samples
        self.bottleneck = verdict(stages, machine_busy) if datapoints else None

    def to_dict(self) -> Dict[str, Any]:
        """The same numbers as plain JSON-compatible values."""
        return {
            "wall_seconds": self.wall_seconds,
            "datapoints": self.datapoints,
            "datapoints_per_second": self.datapoints / self.wall_seconds
            if self.wall_seconds > 0
            else None,
            "machine_busy": self.machine_busy,
            "clocked_seconds": self.clocked_seconds,
            "samples": self.samples,
            "stages": [s.to_dict() for s in self.stages],
            "bottleneck": self.bottleneck.to_dict() if self.bottleneck else None,
        }

    def __str__(self) -> str:
        rate = self.datapoints / self.wall_seconds if self.wall_seconds > 0 else 0.0
        how = ""
        if self.samples:
            how = (
                f" (clocked for {self.clocked_seconds:.2f} s, "
                f"then {self.samples:,} samples of the stacks)"
            )
        lines = [
            f"{self.datapoints} datapoints in {self.wall_seconds:.2f} s ({rate:,.1f}/s); "
            f"own time per stage, as a share of the wall time{how}:"
        ]
        width = max(len(_INDENT * s.depth + s.name) for s in self.stages)
        for s in self.stages:
            label = (_INDENT * s.depth + s.name).ljust(width)
            lines.append(f"{label}  {_numbers(s)}")
        if self.bottleneck is not None:
            lines += ["", f"bottleneck: {self.bottleneck.stage.name}", str(self.bottleneck)]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)


def _numbers(s: Stage) -> str:
    if s.share is None or s.seconds is None:
        return f"[{s.note}]" if s.note else ""
    filled = int(round(min(1.0, max(0.0, s.share)) * _BAR_WIDTH))
    bar = "#" * filled + "." * (_BAR_WIDTH - filled)
    per = s.seconds_per_datapoint
    per_text = f"{per * 1e6:9.1f} us/dp" if per is not None else " " * 15
    text = f"|{bar}| {s.share:6.1%} {per_text} {s.datapoints:>9} dp {_size(s.bytes_out)}"
    return text + (f"  [{s.note}]" if s.note else "")


def _size(n: Optional[int]) -> str:
    if not n:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return ""


# ---- the walk --------------------------------------------------------------------


def _walk(root: DataFlow) -> List[Stage]:
    """Every dataflow once, depth first, each with where it runs (see
    :func:`dataflow._timing.walk`), and what the consumer does with a parallel one."""
    stages = []
    for node in walk(root):
        stage = Stage(node.df, node.depth, node.where, node.name)
        parallel = _parallelism(node.df)
        if node.where == "parallel" and parallel is not None:
            inputs_in_workers, count, kind = parallel
            what = "" if inputs_in_workers else "map_func in "
            stage.note = f"wait for {what}{_workers(count, kind)}"
        stages.append(stage)
    return stages


def _instrument(stages: List[Stage], run: Run, swapped: List[Tuple[DataFlow, type]]) -> None:
    nodes = [Node(s.df, s.depth, s.where, s.name) for s in stages]
    failed = {id(df) for df in instrument(nodes, run, swapped)}
    for stage in stages:
        if id(stage.df) in failed and stage.where != "worker":
            stage.note = "could not be timed"


def _add_worker_statistics(stages: List[Stage]) -> None:
    """Fill in the stages that run in workers from the statistics the workers sent."""
    for par in stages:
        if par.where != "parallel":
            continue
        df: Any = par.df  # a ParallelBase
        if par._plain_note is None:
            par._plain_note = par.note
        walk_note = par._plain_note
        if not getattr(df, "_profiled", False):
            par.note = f"{walk_note}; its workers started before profile() and are not timed"
            continue
        reports = df.worker_statistics()
        if not reports:
            par.note = f"{walk_note}; no statistics from its workers yet"
            continue
        par.workers = len(reports)
        walls = [max(float(r["wall"]), 1e-9) for r in reports]
        busy = [max(0.0, 1.0 - float(r.get("waiting", 0.0)) / w) for r, w in zip(reports, walls)]
        par.busy = sum(busy) / len(busy)
        cpus = [r.get("cpu") for r in reports]
        if all(c is not None for c in cpus):
            par.cpus = sum(c / w for c, w in zip(cpus, walls))
        looked = getattr(df, "_looked", 0)
        par.ready = df._found_waiting / looked if looked else None
        for i, row in worker_rows(par, stages):
            entries = [r["stages"][i] for r in reports if i < len(r["stages"]) and r["stages"][i]]
            if not entries:
                continue
            row.datapoints = int(sum(e[0] for e in entries))
            row.seconds = float(sum(e[1] for e in entries))
            row.bytes_out = int(sum(e[2] for e in entries))
            row.share = row.seconds / sum(walls)
        extra = f"workers busy {par.busy:.0%}"
        if par.cpus is not None:
            extra += f", {par.cpus:.1f} CPUs"
        if par.ready is not None:
            extra += f", output ready {par.ready:.0%} of the times looked"
        par.note = f"{walk_note}; {extra}" if walk_note else extra


# ---- the run --------------------------------------------------------------------

# What timing one datapoint of one stage costs (two clock reads, the stack,
# the bytes), on the high side (about 0.6 us measured): used until _drive has
# measured the cost on the run itself; and the share of the run that timing may cost.
_TIMED_COST_S = 1e-6
_OVERHEAD_TARGET = 0.02
# At least one datapoint in this many (on average) is timed.
_MAX_GAP = 5000
# The stages are clocked until the run has lasted _CLOCKED_S (or _CLOCKED_SHARE
# of the time it may take, if longer) and yielded _CLOCKED_DATAPOINTS, or has
# lasted _CLOCKED_MAX_S; then their time is sampled every _SAMPLE_S or so (see
# dataflow._timing): a short run is measured exactly, a long one costs little.
_CLOCKED_S = 0.005
_CLOCKED_SHARE = 0.02
_CLOCKED_DATAPOINTS = 64
_CLOCKED_MAX_S = 1.0
_SAMPLE_S = 0.002


def _drive(
    df: DataFlow,
    run: Run,
    seconds: Optional[float],
    num: Optional[int],
    watch: Optional[Callable[[int, float, float], None]] = None,
) -> Tuple[int, float, float]:
    """Iterate *df* within the limits, timing a sample of its datapoints, then
    (the hand-over) sampling the stacks.

    Returns how many it yielded, the wall time, and the wall time of the
    timed datapoints (what the stages' timed seconds are shares of). *watch*,
    if given, is called after every datapoint with the count so far, the
    start time (``perf_counter``) and the timed wall time so far.
    """
    perf = time.perf_counter
    gaps = random.Random(0)
    limit = math.inf if num is None else num
    count, next_timed, timed_wall = 0, 1, 0.0
    start = perf()
    deadline = math.inf if seconds is None else start + seconds
    last_timed, stretch_start = 0, start  # the untimed datapoints since the last timed one
    ratio = -1.0  # what timing costs against an untimed datapoint, smoothed (-1: not yet)
    sampler = StackSampler(run, _SAMPLE_S)
    every, next_look, looked = 1, 1, start  # when the untimed datapoints read the clock
    clocked_only = False  # the stacks cannot be sampled: clock all along

    def hand_over(now: float) -> None:
        nonlocal next_timed, clocked_only
        # A stage whose iterator another thread runs is not on the sampled stack.
        if run.other_threads or not sampler.start():
            clocked_only = True
            return
        run.clocked_wall = now - start
        run.sampling = True
        next_timed = 0  # no more timed datapoints

    it = iter(df)
    try:
        while count < limit:
            if count + 1 != next_timed:
                try:
                    next(it)
                except StopIteration:
                    break
                count += 1
                if watch is not None:
                    watch(count, start, timed_wall)
                if count >= next_look:  # the clock is read about every millisecond
                    now = perf()
                    if now >= deadline:
                        break
                    if not (run.sampling or clocked_only) and _clocked_enough(
                        now - start, count, seconds
                    ):
                        hand_over(now)
                    every = every * 2 if now - looked < 0.001 else max(1, every // 2)
                    every = min(every, 4096)
                    next_look, looked = count + every, now
                continue
            _timing.timing_on = True
            before = run.timed_count
            begin = perf()
            try:
                next(it)
            except StopIteration:
                break
            finally:
                _timing.timing_on = False
                end = perf()
                timed_wall += end - begin
            # What timing this datapoint cost, against the wall time of an untimed
            # one: measured, its wall time minus the mean of the untimed stretch
            # before it; without such a stretch, _TIMED_COST_S per stage-datapoint
            # timed, against its own wall time (which errs on the side of timing more).
            # A datapoint that waited (for workers, say) is no measure of the timing:
            # the cost is at most a few times the known cost per stage-datapoint.
            timed_stages = run.timed_count - before
            untimed = count - last_timed
            if untimed:
                plain = (begin - stretch_start) / untimed
                cost = max(0.0, end - begin - plain)
                cost = min(cost, 3 * timed_stages * _TIMED_COST_S)
            else:
                cost = timed_stages * _TIMED_COST_S
                plain = end - begin
            count += 1
            last_timed, stretch_start = count, end
            if watch is not None:
                watch(count, start, timed_wall)
            # Time one datapoint in about *mean*, at random (no aliasing with a
            # period of the pipeline), so that timing costs about _OVERHEAD_TARGET
            # of the run; smoothed, so that one odd datapoint does not decide.
            now = cost / max(plain, 1e-9)
            ratio = now if ratio < 0 else 0.8 * ratio + 0.2 * now
            mean = min(ratio / _OVERHEAD_TARGET, _MAX_GAP)
            next_timed = count + (1 if mean <= 1 else gaps.randint(1, int(2 * mean)))
            if end >= deadline:
                break
            if not clocked_only and _clocked_enough(end - start, count, seconds):
                hand_over(end)
    finally:
        wall = perf() - start
        sampler.stop()
        close = getattr(it, "close", None)
        if close is not None:
            close()
    return count, wall, timed_wall


def _clocked_enough(elapsed: float, count: int, seconds: Optional[float]) -> bool:
    """Whether a run of at most *seconds* that has lasted *elapsed* seconds and
    yielded *count* datapoints has been clocked long enough to go on sampled."""
    least = _CLOCKED_S if seconds is None else max(_CLOCKED_S, _CLOCKED_SHARE * seconds)
    return (elapsed >= least and count >= _CLOCKED_DATAPOINTS) or elapsed >= _CLOCKED_MAX_S


# ---- the function ----------------------------------------------------------------


def profile(
    df: DataFlow, seconds: Optional[float] = 10.0, num: Optional[int] = None
) -> ProfileReport:
    """Run *df* for a while and report where the time goes: ``print(profile(df))``.

    Resets *df* unless it was reset already (see :func:`~dataflow.base.was_reset`),
    then iterates it until *seconds* have passed, *num* datapoints were
    yielded or the pass ends, whichever comes first, timing every stage that
    runs in this process: clocked for the first moments (5 ms, or 2% of
    *seconds* if longer, and 64 datapoints; at most 1 s), then sampled from
    the stack a few hundred times a second. Every datapoint is counted, all
    along. The datapoints are dropped. Every stage gets its
    own class back when ``profile`` returns or raises, and the iterator it
    used is closed.

    A stage's own time is the time spent in it minus the time it waited for
    its input; a parallel dataflow's own time is the time this process waited
    for its workers. The stages that run inside workers have the numbers the
    workers report (added up over the workers) when ``profile`` resets the
    pipeline and so starts them; the workers of a pipeline reset before keep
    running untimed, and the report says so. When ``profile`` returns, the
    workers it started stop timing (a runner's from their next pass on).

    Args:
        df: the dataflow to profile, usually the one you train on.
        seconds: how long to run, > 0; ``None`` for no time limit.
        num: most datapoints to take from *df*, >= 1; ``None`` for no limit.

    Example:
        >>> def decode(dp):
        ...     return [dp[0] * 2]
        >>> df = MapData(DataFromList([[i] for i in range(100)], shuffle=False), decode)
        >>> report = profile(df, num=10)
        >>> [(s.name, s.datapoints) for s in report.stages]
        [('MapData(func=decode)', 10), ('DataFromList(n=100, shuffle=False)', 10)]
        >>> print(report.bottleneck)  # doctest: +SKIP
        MapData(func=decode) takes 61% of one process
        run it in MultiProcessMapDataZMQ(num_proc=2); expected about 2.0x
    """
    if not isinstance(df, DataFlow):
        raise TypeError(f"df must be a DataFlow, got {type(df).__name__}")
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0
    ):
        raise ValueError(f"seconds must be a positive number or None, got {seconds!r}")
    if num is not None:
        num = _check_int("num", num, 1, "a positive int or None")
    return _profile(df, seconds, num)


def _profile(
    df: DataFlow,
    seconds: Optional[float],
    num: Optional[int],
    watch: Optional[Callable[[int, Callable[[], ProfileReport]], None]] = None,
) -> ProfileReport:
    """:func:`profile` without its argument checks; *watch*, if given, is called
    after every datapoint with the count so far and a function that returns
    the report as it stands (as :class:`~dataflow.debug.TestDataSpeed` shows it)."""
    if not _ONE_AT_A_TIME.acquire(blocking=False):
        raise RuntimeError(
            "profile() is already running (in another thread): it swaps the classes of the "
            "stages it times, so two runs would time each other. Profile one pipeline at a time"
        )
    stages: List[Stage] = []
    try:
        if not was_reset(df):
            with workers_profiled():  # the workers it starts time their stages
                df.reset_state()
        stages = _walk(df)
        run = Run()
        cpu_before = machine_cpu_times()
        swapped: List[Tuple[DataFlow, type]] = []
        on_datapoint = None
        if watch is not None:

            def on_datapoint(count: int, start: float, timed_wall: float) -> None:
                def now() -> ProfileReport:
                    wall = time.perf_counter() - start
                    return _report(stages, run, count, wall, timed_wall, cpu_before)

                watch(count, now)

        try:
            _instrument(stages, run, swapped)
            count, wall, timed_wall = _drive(df, run, seconds, num, on_datapoint)
        finally:
            restore(swapped)
        for stage in stages:  # the last numbers of the workers, not those of 0.1 s ago
            if stage.where == "parallel" and getattr(stage.df, "_profiled", False):
                stage.df._fresh_statistics()  # type: ignore[attr-defined]
        return _report(stages, run, count, wall, timed_wall, cpu_before)
    finally:
        _ONE_AT_A_TIME.release()
        for stage in stages:  # the workers timed for this run stop timing
            if stage.where == "parallel" and getattr(stage.df, "_profiled", False):
                stage.df._end_profiling()  # type: ignore[attr-defined]


def _share(counter: _timing.Counter, run: Run, wall: float, timed_wall: float) -> float:
    """A stage's own time as a share of *wall*: while clocked, its share of the
    timed datapoints' wall time; after the hand-over, of the samples."""
    clocked = max(0.0, counter.seconds) / timed_wall if timed_wall > 0 else None
    sampled = counter.sampled / run.sampled_wall if run.sampled_wall > 0 else None
    if sampled is None:
        return clocked or 0.0
    if clocked is None:
        return sampled
    before = min(run.clocked_wall, wall)
    return (clocked * before + sampled * (wall - before)) / wall if wall > 0 else 0.0


def _report(
    stages: List[Stage],
    run: Run,
    count: int,
    wall: float,
    timed_wall: float,
    cpu_before: Optional[Tuple[float, float]],
) -> ProfileReport:
    """The report of a run that has yielded *count* datapoints in *wall* seconds;
    *cpu_before*: the machine's CPU times at its start."""
    for stage in stages:
        counter = run.counters.get(id(stage.df))
        if counter is None or stage.where == "worker":
            continue
        share = _share(counter, run, wall, timed_wall)
        stage.share = share
        stage.seconds = share * wall
        stage.datapoints = produced = counter.produced()
        stage.bytes_out = (
            round(counter.bytes_out * produced / counter.timed) if counter.timed else None
        )
    _add_worker_statistics(stages)
    machine_busy = None
    cpu_after = machine_cpu_times()
    if cpu_before is not None and cpu_after is not None and cpu_after[1] > cpu_before[1]:
        busy = (cpu_after[0] - cpu_before[0]) / (cpu_after[1] - cpu_before[1])
        machine_busy = min(1.0, max(0.0, busy))
    clocked = min(run.clocked_wall, wall) if run.sampling else wall
    return ProfileReport(stages, wall, count, machine_busy, clocked, run.samples)
