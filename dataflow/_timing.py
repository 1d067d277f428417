"""How :func:`dataflow.profile` times stages: in the consumer and inside workers.

A stage is timed by giving it a subclass of its own class (:func:`instrument`)
whose ``__iter__`` wraps the original iterator in :func:`_timed_iter`, which
counts every datapoint and times those produced while timing is on; a run
(:class:`Run`) holds the counters, and :func:`restore` gives every stage its
class back. :func:`walk` lists the stages of a pipeline in the one order that
the consumer and the workers agree on, with where each runs.

This module knows no parallel dataflow by name (it lies below them): a
runner or mapper says what its workers run with its ``_work_kind``
(``"runner"``: its input; ``"mapper"``: its function).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Set, Tuple

import numpy as np

__all__ = [
    "FUNC_ROW",
    "Counter",
    "Node",
    "Run",
    "func_name",
    "instrument",
    "nbytes",
    "restore",
    "walk",
]

#: how a mapper's function is named among the stages
FUNC_ROW = "[map_func, in workers]"


def nbytes(dp: Any) -> int:
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


class Counter:
    """What one stage's timed ``__iter__`` adds up: every datapoint it
    produced, and the time and bytes of those produced while timing was on."""

    __slots__ = ("datapoints", "timed", "seconds", "bytes_out")

    def __init__(self) -> None:
        self.datapoints = 0
        self.timed = 0
        self.seconds = 0.0
        self.bytes_out = 0


class Run:
    """One profiling run: its counters, and the time spent in inputs.

    Timing (``timing_on``) is on for a sample of the datapoints of the profiled dataflow
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
        self.counters: Dict[int, Counter] = {}
        # Time every datapoint, whatever timing_on says (a worker's run: see
        # dataflow._profile_workers).
        self.always = False


# Whether the datapoint of the profiled dataflow now being produced is timed. A
# global, not an attribute of the run: every stage reads it once per datapoint.
# So only one profile runs at a time (a second one would time at random).
timing_on = False
_TIMED_CLASSES: Dict[type, type] = {}  # original class -> its timed subclass
_TIMED: Set[type] = set()  # the timed subclasses
# id of a timed dataflow -> its run and counter. Several runs may be live at once in
# one process: profile()'s, and those of the worker threads of the pipeline it profiles.
_ACTIVE: Dict[int, Tuple[Run, Counter]] = {}


def _timed_class(cls: type) -> type:
    timed = _TIMED_CLASSES.get(cls)
    if timed is not None:
        return timed
    original_iter = cls.__iter__  # type: ignore[attr-defined]

    def __iter__(self: Any) -> Iterator[Any]:
        entry = _ACTIVE.get(id(self))
        if entry is None:  # a copy made while profiling, or after it: not timed
            return original_iter(self)
        return _timed_iter(entry[0], entry[1], iter(original_iter(self)))

    namespace = {
        "__slots__": (),
        "__iter__": __iter__,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
    }
    timed = type(cls)(cls.__name__, (cls,), namespace)
    _TIMED_CLASSES[cls] = timed
    _TIMED.add(timed)
    return timed


def _timed_iter(run: Run, counter: Counter, it: Iterator[Any]) -> Iterator[Any]:
    """Yield what *it* yields; count it, and while timing is on, time it.

    Whether one call for a datapoint is timed is decided when the call
    starts, so a call is timed from its start to its end or not at all;
    ``timing_on`` changes only between two datapoints of the profiled
    dataflow, when no stage runs. While ``run.always`` is true every call is
    timed (a worker's run, until profiling ends).

    Untimed, a datapoint costs only the inner ``for`` loop: a count, the
    ``yield`` and one read of ``timing_on`` after it (what the next call
    needs); everything else is done for the timed datapoints alone.
    """
    perf = time.perf_counter
    children = run.children
    nested = run.thread == threading.get_ident()
    n = 0  # datapoints not yet added to the counter (added at each timed one and at the end)
    try:
        while True:
            if not (run.always or timing_on):  # run.always: read again, it may end
                for dp in it:
                    n += 1
                    yield dp
                    if timing_on:
                        break  # the next call is timed
                else:
                    return
            if nested:
                children.append(0.0)
            start = perf()
            try:
                dp = next(it)
            except StopIteration:
                dp = _END
            elapsed = perf() - start
            counter.seconds += elapsed - (children.pop() if nested else 0.0)
            if nested:
                children[-1] += elapsed
            if dp is _END:
                return
            counter.datapoints += n + 1
            n = 0
            counter.timed += 1
            run.timed_count += 1
            counter.bytes_out += nbytes(dp)
            yield dp
    finally:
        counter.datapoints += n
        close = getattr(it, "close", None)
        if close is not None:
            close()


_END = object()  # what _timed_iter's timed call got when its input ended


# ---- the walk --------------------------------------------------------------------


class Node(NamedTuple):
    """One stage of a pipeline: *df*, its *depth* below the root, *where* it
    runs (``"consumer"``: in the process that walks; ``"parallel"``: a runner or
    mapper there; ``"worker"``: in workers), and for a mapper's function
    (``where == "worker"``, *df* the mapper) its *name*."""

    df: Any
    depth: int
    where: str
    name: Optional[str] = None


def walk(root: Any) -> List[Node]:
    """Every dataflow of *root*'s pipeline once, depth first, each with where it
    runs; a mapper is followed by its function. Workers walking their copy of a
    runner's input get the same order as the consumer walking the original."""
    nodes: List[Node] = []
    seen = set()
    stack: List[Tuple[Any, int, str]] = [(root, 0, "consumer")]
    while stack:
        df, depth, where = stack.pop()
        if id(df) in seen:
            continue
        seen.add(id(df))
        kind = getattr(type(df), "_work_kind", None)
        nodes.append(Node(df, depth, "parallel" if kind and where == "consumer" else where))
        try:
            parents = tuple(df.parents)
        except Exception:  # a user's parents property may fail; the profile must not
            parents = ()
        below = where
        if kind == "runner":
            below = "worker"
        elif kind == "mapper":
            name = func_name(getattr(df, "map_func", None))
            batch = getattr(df, "batch_size", None)
            if isinstance(batch, int):  # map-and-batch: it makes (and counts) batches
                name += f", batches of {batch}"
            name = f"{name} {FUNC_ROW}"
            nodes.append(Node(df, depth + 1, "worker", name))
        stack.extend((p, depth + 1, below) for p in reversed(parents))
    return nodes


def func_name(func: Any) -> str:
    """The name a function is shown under."""
    name = getattr(func, "__name__", None)
    return name if isinstance(name, str) else type(func).__name__


def instrument(nodes: List[Node], run: Run, swapped: List[Tuple[Any, type]]) -> List[Any]:
    """Give every stage of this process its timed class, noting in *swapped*
    (at once, so an interruption leaves nothing behind) what to put back.
    Returns the dataflows that could not be timed."""
    failed = []
    for node in nodes:
        if node.where == "worker":
            continue
        df, cls = node.df, type(node.df)
        if id(df) in _ACTIVE or cls in _TIMED:  # timed by another run
            continue
        try:
            timed = _timed_class(cls)
            counter = run.counters[id(df)] = Counter()
            _ACTIVE[id(df)] = (run, counter)
            df.__class__ = timed
        except Exception:  # e.g. a class whose layout forbids it: leave it as it is
            run.counters.pop(id(df), None)
            _ACTIVE.pop(id(df), None)
            failed.append(df)
            continue
        swapped.append((df, cls))
    return failed


def restore(swapped: List[Tuple[Any, type]]) -> None:
    """Give the stages of *swapped* their classes back."""
    for df, cls in reversed(swapped):
        _ACTIVE.pop(id(df), None)
        df.__class__ = cls
