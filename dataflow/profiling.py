"""Find the stage that limits a pipeline: :func:`profile` runs it and names it.

``profile(df)`` iterates *df* for a while with every stage of the consuming
process timed, and returns a :class:`ProfileReport`: per stage, the
datapoints it produced, its own time per datapoint (time in the stage minus
time waiting for its input), its share of the wall time and the bytes it
produced; and a verdict, :attr:`ProfileReport.bottleneck`, with what to do.

Nothing is timed unless you ask: while it runs, ``profile`` gives each
stage a subclass of its own class whose ``__iter__`` times the original one,
and puts the original class back when it returns or fails. A pipeline that
is not being profiled runs exactly the code it ran before.

A parallel dataflow (a runner or a mapper) is one stage for now: its own
time is the time the consumer waits for its workers. The stages inside its
workers are drawn in the tree without numbers; their statistics come in a
later step.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ._checks import check_int as _check_int
from .base import DataFlow, was_reset
from .graph import _one_line, _parallelism, _workers

__all__ = ["ProfileReport", "Stage", "Bottleneck", "profile"]

_INDENT = "  "
_BAR_WIDTH = 20
_WORKER_NOTE = "statistics of worker stages come in a later step"


class Stage:
    """One dataflow of a profiled pipeline and what it did.

    Attributes:
        df: the dataflow.
        name: its ``repr`` on one line.
        depth: its level below the profiled dataflow (0 for that one).
        where: ``"consumer"`` (timed), ``"parallel"`` (a runner or mapper,
            timed as the wait for its workers) or ``"worker"`` (runs in
            worker processes or threads; not measured in this version).
        datapoints: how many it produced (``None`` if not measured).
        seconds: its own time in total: time in the stage minus time
            waiting for its input (``None`` if not measured).
        bytes_out: ``nbytes`` of the numpy arrays (and ``len`` of the
            ``bytes``) among the components of what it produced.
        share: *seconds* as a fraction of the wall time of the run.
    """

    def __init__(self, df: DataFlow, depth: int, where: str) -> None:
        self.df = df
        self.name = _one_line(df)
        self.depth = depth
        self.where = where
        self.datapoints: Optional[int] = None
        self.seconds: Optional[float] = None
        self.bytes_out: Optional[int] = None
        self.share: Optional[float] = None
        self.note = ""

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
            "note": self.note,
        }

    def __repr__(self) -> str:
        return f"Stage({self.name}, share={self.share})"


class Bottleneck:
    """The verdict: the *stage* that limits throughput, why, and what to do.

    ``str()`` is the explanation and the suggestion on two lines.

    Attributes:
        stage: the :class:`Stage`.
        explanation: one line: what share of the wall time it takes.
        suggestion: one line: what to change, with the expected speed-up.
        speedup: that expected speed-up (``None`` when none can be promised).
    """

    def __init__(
        self, stage: Stage, explanation: str, suggestion: str, speedup: Optional[float]
    ) -> None:
        self.stage = stage
        self.explanation = explanation
        self.suggestion = suggestion
        self.speedup = speedup

    def __str__(self) -> str:
        return f"{self.explanation}\n{self.suggestion}"

    def __repr__(self) -> str:
        return f"Bottleneck({self.stage.name})"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "stage": self.stage.name,
            "explanation": self.explanation,
            "suggestion": self.suggestion,
            "speedup": self.speedup,
        }


class ProfileReport:
    """What :func:`profile` measured; ``print(report)`` draws it.

    Attributes:
        stages: every dataflow of the pipeline, in the order of
            :func:`~dataflow.describe` (the profiled one first).
        wall_seconds: how long the run took.
        datapoints: how many datapoints the profiled dataflow yielded.
        bottleneck: the :class:`Bottleneck`, or ``None`` if nothing was
            produced.
    """

    def __init__(self, stages: List[Stage], wall_seconds: float, datapoints: int) -> None:
        self.stages = stages
        self.wall_seconds = wall_seconds
        self.datapoints = datapoints
        self.bottleneck = _verdict(stages) if datapoints else None

    def to_dict(self) -> Dict[str, Any]:
        """The same numbers as plain JSON-compatible values."""
        return {
            "wall_seconds": self.wall_seconds,
            "datapoints": self.datapoints,
            "datapoints_per_second": self.datapoints / self.wall_seconds
            if self.wall_seconds > 0
            else None,
            "stages": [s.to_dict() for s in self.stages],
            "bottleneck": self.bottleneck.to_dict() if self.bottleneck else None,
        }

    def __str__(self) -> str:
        rate = self.datapoints / self.wall_seconds if self.wall_seconds > 0 else 0.0
        lines = [
            f"{self.datapoints} datapoints in {self.wall_seconds:.2f} s ({rate:,.1f}/s); "
            "own time per stage, as a share of the wall time:"
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


# ---- the timing ------------------------------------------------------------------


def _nbytes(dp: Any) -> int:
    """Bytes of the arrays (and ``bytes``) among the components of *dp*."""
    parts = dp.values() if type(dp) is dict else dp
    if type(parts) is np.ndarray:
        return parts.nbytes
    n = 0
    try:
        for c in parts:
            if type(c) is np.ndarray:
                n += c.nbytes
            elif type(c) is bytes:
                n += len(c)
    except TypeError:  # a datapoint that is not a list, tuple or dict
        pass
    return n


class _Counter:
    """What one stage's timed ``__iter__`` adds up: every datapoint it
    produced, and the time and bytes of those produced while timing was on."""

    __slots__ = ("datapoints", "timed", "seconds", "bytes_out")

    def __init__(self) -> None:
        self.datapoints = 0
        self.timed = 0
        self.seconds = 0.0
        self.bytes_out = 0


class _Run:
    """One profiling run: its counters, and the time spent in inputs.

    Timing (``_timing``) is on for a sample of the datapoints of the profiled dataflow
    (``profile`` switches it between two of them, so a datapoint is timed in
    every stage or in none): two clock reads per stage and datapoint would
    cost more than a fast stage itself. ``children[-1]`` is the time the
    stage now running has spent inside the stages it reads from; a stage
    subtracts it from its own elapsed time. Only the thread that runs
    ``profile`` uses the stack.
    """

    def __init__(self) -> None:
        self.timed_count = 0  # stage-datapoints timed so far
        self.children: List[float] = [0.0]
        self.thread = threading.get_ident()
        self.counters: Dict[int, _Counter] = {}


# Whether the datapoint of the profiled dataflow now being produced is timed. A
# global, not an attribute of the run: every stage reads it once per datapoint.
# So only one profile runs at a time (a second one would time at random).
_timing = False
_TIMED_CLASSES: Dict[type, type] = {}  # original class -> its timed subclass
_RUN_ATTR = "_dataflow_profile_run"
# Held while profile() runs: one run at a time in the process.
_ONE_AT_A_TIME = threading.Lock()


def _timed_class(cls: type) -> type:
    timed = _TIMED_CLASSES.get(cls)
    if timed is not None:
        return timed
    original_iter = cls.__iter__  # type: ignore[attr-defined]

    def __iter__(self: Any) -> Iterator[Any]:
        run: Optional[_Run] = getattr(type(self), _RUN_ATTR)
        counter = run.counters.get(id(self)) if run is not None else None
        if run is None or counter is None:  # a copy made while profiling: not timed
            return original_iter(self)
        return _timed_iter(run, counter, iter(original_iter(self)))

    namespace = {
        "__slots__": (),
        "__iter__": __iter__,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        _RUN_ATTR: None,
    }
    timed = type(cls)(cls.__name__, (cls,), namespace)
    _TIMED_CLASSES[cls] = timed
    return timed


def _timed_iter(run: _Run, counter: _Counter, it: Iterator[Any]) -> Iterator[Any]:
    """Yield what *it* yields; count it, and while timing is on, time it.

    Whether one call for a datapoint is timed is decided when the call
    starts (``on``), so a call is timed from its start to its end or not at
    all; ``_timing`` changes only between two datapoints of the profiled
    dataflow, when no stage runs.
    """
    perf = time.perf_counter
    children = run.children
    nested = run.thread == threading.get_ident()
    n = 0  # flushed into the counter at each timed datapoint and at the end
    start = 0.0
    try:
        on = _timing
        if on:
            if nested:
                children.append(0.0)
            start = perf()
        for dp in it:
            if on:
                elapsed = perf() - start
                counter.seconds += elapsed - (children.pop() if nested else 0.0)
                if nested:
                    children[-1] += elapsed
                counter.datapoints += n + 1
                n = -1
                counter.timed += 1
                run.timed_count += 1
                counter.bytes_out += _nbytes(dp)
            n += 1
            yield dp
            on = _timing
            if on:
                if nested:
                    children.append(0.0)
                start = perf()
        if on:
            elapsed = perf() - start
            counter.seconds += elapsed - (children.pop() if nested else 0.0)
            if nested:
                children[-1] += elapsed
    finally:
        counter.datapoints += n
        close = getattr(it, "close", None)
        if close is not None:
            close()


# ---- the walk --------------------------------------------------------------------


def _walk(root: DataFlow) -> List[Stage]:
    """Every dataflow once, depth first, each with where it runs."""
    stages: List[Stage] = []
    seen = set()
    stack: List[Tuple[Any, int, str]] = [(root, 0, "consumer")]
    while stack:
        df, depth, where = stack.pop()
        if id(df) in seen:
            continue
        seen.add(id(df))
        parallel = _parallelism(df)
        stage = Stage(df, depth, "parallel" if parallel and where == "consumer" else where)
        stages.append(stage)
        try:
            parents = tuple(df.parents)
        except Exception:  # a user's parents property may fail; the profile must not
            parents = ()
        below = where
        if parallel is not None:
            inputs_in_workers, count, kind = parallel
            if inputs_in_workers:
                below = "worker"
                if where == "consumer":
                    stage.note = f"wait for {_workers(count, kind)}"
            elif where == "consumer":
                stage.note = f"wait for map_func in {_workers(count, kind)}"
        if stage.where == "worker":
            stage.note = f"in workers; {_WORKER_NOTE}"
        stack.extend((p, depth + 1, below) for p in reversed(parents))
    return stages


def _instrument(stages: List[Stage], run: _Run, swapped: List[Tuple[DataFlow, type]]) -> None:
    """Give every stage of this process its timed class, noting in *swapped*
    (at once, so an interruption leaves nothing behind) what to put back."""
    for stage in stages:
        if stage.where == "worker":
            continue
        df, cls = stage.df, type(stage.df)
        try:
            timed = _timed_class(cls)
            setattr(timed, _RUN_ATTR, run)
            run.counters[id(df)] = _Counter()
            df.__class__ = timed
        except Exception:  # e.g. a class whose layout forbids it: leave it as it is
            run.counters.pop(id(df), None)
            stage.note = "could not be timed"
            continue
        swapped.append((df, cls))


def _restore(swapped: List[Tuple[DataFlow, type]]) -> None:
    for df, cls in reversed(swapped):
        timed = type(df)
        df.__class__ = cls
        setattr(timed, _RUN_ATTR, None)


# ---- the verdict -----------------------------------------------------------------


def _workers_for(share: float, cpus: int) -> Tuple[int, float]:
    """How many workers make a stage with *share* stop limiting, and the speed-up.

    Moved to *k* workers, the stage takes ``share / k`` of today's time per
    datapoint while the rest (``1 - share``) still runs in the consumer, at
    the same time: the pipeline runs at ``1 / max(1 - share, share / k)``.
    """
    k_needed = math.ceil(share / max(1.0 - share, 1e-9))
    k = max(2, min(k_needed, max(1, cpus - 1)))
    return k, 1.0 / max(1.0 - share, share / k)


def _verdict(stages: List[Stage]) -> Optional[Bottleneck]:
    timed = [s for s in stages if s.share is not None]
    if not timed:
        return None
    top = max(timed, key=lambda s: s.share or 0.0)
    share = top.share or 0.0
    cpus = os.cpu_count() or 1
    cls = type(top.df).__name__
    if top.where == "parallel":
        count = getattr(top.df, "num_proc", getattr(top.df, "num_thread", None))
        explanation = f"the consumer waits for the workers of {top.name} {share:.0%} of the time"
        more = f" (now {count}, {cpus} CPUs)" if count is not None else ""
        return Bottleneck(
            top,
            explanation,
            f"give it more workers{more}, or make what runs in them faster; "
            f"{_WORKER_NOTE}, until then profile its input alone",
            None,
        )
    explanation = f"{top.name} takes {share:.0%} of one process"
    if share < 0.5 and cpus > 1:
        return Bottleneck(
            top,
            explanation + "; no stage dominates",
            "the time is spread over the stages: parallelize the whole pipeline "
            f"with MultiProcessRunnerZMQ(ds, num_proc={max(2, min(4, cpus - 1))})",
            None,
        )
    if cpus <= 1:
        return Bottleneck(
            top, explanation, "this machine has one CPU: make this stage cheaper", None
        )
    k, speedup = _workers_for(share, cpus)
    expected = f"expected about {speedup:.1f}x"
    if not top.df.parents:
        suggestion = (
            f"it is a source: read it in parallel, MultiProcessRunnerZMQ({cls}(...), "
            f"num_proc={k}) over shards of it ({expected}), or store the data in a "
            "faster format (see docs/formats.md)"
        )
    elif hasattr(top.df, "func") and hasattr(top.df, "ds"):
        suggestion = f"run it in MultiProcessMapDataZMQ(num_proc={k}); {expected}"
    else:
        suggestion = (
            f"run it and what feeds it in workers: MultiProcessRunnerZMQ({cls}(...), "
            f"num_proc={k}); {expected}"
        )
    return Bottleneck(top, explanation, suggestion, round(speedup, 2))


# ---- the run --------------------------------------------------------------------

# What timing one datapoint of one stage costs (two clock reads, the stack,
# the bytes), on the high side; and the share of the run that timing may cost.
_TIMED_COST_S = 1e-6
_OVERHEAD_TARGET = 0.03


def _drive(
    df: DataFlow, run: _Run, seconds: Optional[float], num: Optional[int]
) -> Tuple[int, float, float]:
    """Iterate *df* within the limits, timing a sample of its datapoints.

    Returns how many it yielded, the wall time, and the wall time of the
    timed datapoints (what the stages' timed seconds are shares of).
    """
    global _timing
    perf = time.perf_counter
    gaps = random.Random(0)
    limit = math.inf if num is None else num
    count, next_timed, timed_wall = 0, 1, 0.0
    start = perf()
    deadline = math.inf if seconds is None else start + seconds
    it = iter(df)
    try:
        while count < limit:
            if count + 1 != next_timed:
                try:
                    next(it)
                except StopIteration:
                    break
                count += 1
                continue
            _timing = True
            before = run.timed_count
            begin = perf()
            try:
                next(it)
            except StopIteration:
                break
            finally:
                _timing = False
                end = perf()
                timed_wall += end - begin
            count += 1
            # Time one datapoint in about *mean*, at random (no aliasing with a
            # period of the pipeline), so that timing costs about 3% of the run.
            cost = (run.timed_count - before) * _TIMED_COST_S / max(end - begin, 1e-9)
            mean = cost / _OVERHEAD_TARGET
            next_timed = count + (1 if mean <= 1 else gaps.randint(1, int(2 * mean)))
            if end >= deadline:
                break
    finally:
        wall = perf() - start
        close = getattr(it, "close", None)
        if close is not None:
            close()
    return count, wall, timed_wall


# ---- the function ----------------------------------------------------------------


def profile(
    df: DataFlow, seconds: Optional[float] = 10.0, num: Optional[int] = None
) -> ProfileReport:
    """Run *df* for a while and report where the time goes: ``print(profile(df))``.

    Resets *df* unless it was reset already (see :func:`~dataflow.base.was_reset`),
    then iterates it until *seconds* have passed, *num* datapoints were
    yielded or the pass ends, whichever comes first, timing every stage that
    runs in this process. The datapoints are dropped. Every stage gets its
    own class back when ``profile`` returns or raises, and the iterator it
    used is closed.

    A stage's own time is the time spent in it minus the time it waited for
    its input; a parallel dataflow's own time is the time this process waited
    for its workers. The stages inside workers are listed without numbers:
    their statistics come in a later step.

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
    if not _ONE_AT_A_TIME.acquire(blocking=False):
        raise RuntimeError(
            "profile() is already running (in another thread): it swaps the classes of the "
            "stages it times, so two runs would time each other. Profile one pipeline at a time"
        )
    try:
        if not was_reset(df):
            df.reset_state()
        stages = _walk(df)
        run = _Run()
        swapped: List[Tuple[DataFlow, type]] = []
        try:
            _instrument(stages, run, swapped)
            count, wall, timed_wall = _drive(df, run, seconds, num)
        finally:
            _restore(swapped)
    finally:
        _ONE_AT_A_TIME.release()
    for stage in stages:
        counter = run.counters.get(id(stage.df))
        if counter is None:
            continue
        share = max(0.0, counter.seconds) / timed_wall if timed_wall > 0 else 0.0
        stage.share = share
        stage.seconds = share * wall
        stage.datapoints = counter.datapoints
        stage.bytes_out = (
            round(counter.bytes_out * counter.datapoints / counter.timed) if counter.timed else 0
        )
    return ProfileReport(stages, wall, count)
