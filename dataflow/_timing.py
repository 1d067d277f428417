"""How :func:`dataflow.profile` times stages: in the consumer and inside workers.

A stage is timed by giving it a subclass of its own class (:func:`instrument`)
whose ``__iter__`` wraps the original iterator; a run (:class:`Run`) holds the
counters, and :func:`restore` gives every stage its class back. :func:`walk`
lists the stages of a pipeline in the one order that the consumer and the
workers agree on, with where each runs.

The consumer's run has two phases. At first every stage's iterator goes through
:func:`_timed_iter`, a generator that counts every datapoint and clocks those
of a sample (exact own times, even for a run of a few datapoints). Then
``profile`` hands over: each iterator goes on as ``compress(it, tally)``, which
costs a few nanoseconds a datapoint in C and still counts every one (the tally
is a ``repeat`` whose remaining length says how many were taken), and a timer
signal (:class:`dataflow._sampler.StackSampler`) looks at the stack of the main thread every
millisecond or so: the innermost frame that belongs to a stage's iterator
names the stage whose own code runs, and the time since the last look goes to
it. The workers' runs clock every datapoint (their cost is not the consumer's).

This module knows no parallel dataflow by name (it lies below them): a
runner or mapper says what its workers run with its ``_work_kind``
(``"runner"``: its input; ``"mapper"``: its function).
"""

from __future__ import annotations

import gc
import itertools
import sys
import threading
import time
import types
import weakref
from typing import (
    Any,
    Dict,
    Generator,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Set,
    Tuple,
    cast,
)

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


# How many datapoints a tally can count (it would stop a stage's iterator after that).
_TALLY_SIZE = sys.maxsize


class Counter:
    """What one stage's timed ``__iter__`` adds up: the datapoints it produced
    (while clocked, and those its iterators that ended tallied after the
    hand-over), those its live iterators are tallying (``tallies``), the time
    and bytes of those clocked, and the sampled time after the hand-over."""

    __slots__ = ("datapoints", "timed", "seconds", "bytes_out", "tallies", "sampled")

    def __init__(self) -> None:
        self.datapoints = 0
        self.timed = 0
        self.seconds = 0.0
        self.bytes_out = 0
        self.tallies: Set[Any] = set()  # itertools.repeat objects, one per live iterator
        self.sampled = 0.0

    def produced(self) -> int:
        """Every datapoint the stage produced so far, clocked or not."""
        return self.datapoints + sum(_TALLY_SIZE - t.__length_hint__() for t in list(self.tallies))

    def fold(self, tally: Any) -> None:
        """Add up the datapoints of an iterator that will produce no more."""
        if tally in self.tallies:
            self.tallies.discard(tally)
            self.datapoints += _TALLY_SIZE - tally.__length_hint__()


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
        # After the hand-over (the consumer's run): iterators are tallied in C and
        # the stages' time is sampled (see the module's docstring).
        self.sampling = False
        self.clocked_wall = 0.0  # the run's wall time before the hand-over
        self.sampled_wall = 0.0  # the time the samples cover
        # Whether a stage's iterator runs in a thread that is not sampled: then the run
        # does not hand over, or (if it came later) that stage's time is only clocked.
        self.other_threads = False
        self.samples = 0
        # id of the frame of a generator that runs a stage's code -> a weak
        # reference to the generator, and the stage's counter
        self.frames: Dict[int, Tuple[Any, Counter]] = {}


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
        run, counter = entry
        it = iter(original_iter(self))
        if run.always:
            return _timed_iter(run, counter, it)
        return _tallied(run, counter, it)

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


def _timed_iter(
    run: Run, counter: Counter, it: Iterator[Any], ended: Optional[List[bool]] = None
) -> Generator[Any, None, None]:
    """Yield what *it* yields; count it, and while timing is on, time it.

    Whether one call for a datapoint is timed is decided when the call
    starts, so a call is timed from its start to its end or not at all;
    ``timing_on`` changes only between two datapoints of the profiled
    dataflow, when no stage runs. While ``run.always`` is true every call is
    timed (a worker's run, until profiling ends). Given *ended* (the consumer's
    run), it returns once ``run.sampling`` is set, leaving *it* open for the
    tally that goes on, and appends whether *it* had ended.

    Untimed, a datapoint costs only the inner ``for`` loop: a count, the
    ``yield`` and a read of the switches after it (what the next call
    needs); everything else is done for the timed datapoints alone.
    """
    perf = time.perf_counter
    children = run.children
    nested = run.thread == threading.get_ident()
    n = 0  # datapoints not yet added to the counter (added at each timed one and at the end)
    done = False
    hand_over = ended is not None
    try:
        while True:
            if not (run.always or timing_on):  # run.always: read again, it may end
                for dp in it:
                    n += 1
                    yield dp
                    if timing_on or hand_over and run.sampling:
                        break  # the next call is timed, or tallied in C
                else:
                    done = True
                    return
            if hand_over and run.sampling:
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
                done = True
                return
            counter.datapoints += n + 1
            n = 0
            counter.timed += 1
            run.timed_count += 1
            counter.bytes_out += nbytes(dp)
            yield dp
    finally:
        counter.datapoints += n
        if ended is not None:
            ended.append(done)
        else:
            close = getattr(it, "close", None)
            if close is not None:
                close()


class _Tallied(itertools.chain):
    """A stage's iterator in the consumer's run: a ``chain`` of its parts
    (:func:`_tallied_parts`), so that its datapoints cost C code only;
    ``close()`` closes the stage's own iterator, as a generator's would."""

    __slots__ = ("_parts", "_source")
    _parts: Generator[Any, None, None]
    _source: Iterator[Any]

    def close(self) -> None:
        self._parts.close()  # adds up what they counted
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


def _tallied(run: Run, counter: Counter, it: Iterator[Any]) -> Iterator[Any]:
    """*it* as the consumer's run iterates it: clocked until the hand-over
    (unless it has come), then tallied in C, with the frames that run the
    stage's code noted for the sampler."""
    if threading.get_ident() != run.thread:  # its stack is not sampled: clocked only
        run.other_threads = True
        return _timed_iter(run, counter, it)
    generators = _generators_of(it)
    if generators is None:  # Python code the sampler could not tell from the caller's
        it = _stand_in(it)
        generators = [it]
    for gen in generators:
        # Not the frame itself: a frame kept alive keeps the locals of its finished
        # generator alive (the stage's inputs, never closed). Its id is the key while
        # the generator lives; the sampler checks that it still is its frame.
        run.frames[id(gen.gi_frame)] = (weakref.ref(gen), counter)
    parts = _tallied_parts(run, counter, it)
    out = cast(_Tallied, _Tallied.from_iterable(parts))
    out._parts, out._source = parts, it
    return out


def _tallied_parts(
    run: Run, counter: Counter, it: Iterator[Any]
) -> Generator[Iterator[Any], None, None]:
    """The parts of a stage's iterator: clocked until the hand-over (unless it has
    come), then ``compress(it, tally)``, which counts in C; its count is added
    to the stage's when it ends or is dropped."""
    ended: List[bool] = []
    head = None
    tally = itertools.repeat(True, _TALLY_SIZE)
    try:
        if not run.sampling:
            head = _timed_iter(run, counter, it, ended)
            yield head
            if ended and ended[0]:  # its input ended: asking again might take one more
                return
        counter.tallies.add(tally)
        yield itertools.compress(it, tally)
    finally:
        if head is not None:
            head.close()  # adds up what it counted
        counter.fold(tally)


def _stand_in(it: Iterator[Any]) -> Iterator[Any]:
    """A generator whose frame stands for *it* on the stack."""
    yield from it


def _generators_of(it: Any, depth: int = 4) -> Optional[List[Any]]:
    """The generators that run *it*'s Python code, found through the C
    iterators it is built of (``chain``, ``map`` of a builtin, ...); ``None``
    if it may run Python code in another way (its own ``__next__``, a Python
    function a C iterator calls), which the stack could not tell from the code
    of the stage that calls it."""
    if type(it) is types.GeneratorType:
        return [] if it.gi_frame is None else [it]
    if isinstance(it, _Tallied) or getattr(it, "_plain_iterator", False):
        return []  # another stage's (it has its own frames), or no stage's code
    if type(it) in _PLAIN:
        if type(it) is not _TUPLE_ITERATOR:
            return []  # C code over data
        # a chain's iterables (which may be generators): a few of them
        items = gc.get_referents(it)
        if len(items) != 1 or len(items[0]) > 16:
            return []
        refs = [items[0]]
    elif depth == 0 or type(it).__module__ not in ("itertools", "builtins"):
        return None
    else:
        refs = gc.get_referents(it)
    found: List[Any] = []
    for ref in refs:
        for r in ref if type(ref) is tuple else (ref,):  # map's and zip's iterators
            if callable(r) and not (
                isinstance(r, types.BuiltinFunctionType)
                or isinstance(r, type)
                and r.__module__ == "builtins"
            ):
                return None  # a Python function, or a class whose __init__ may be one
            if hasattr(type(r), "__next__"):
                gens = _generators_of(r, depth - 1)
                if gens is None:
                    return None
                found += gens
    return found


# Iterators that run no Python code: over lists, tuples, ranges, strings, dicts.
_EMPTY: Tuple[Any, ...] = ([], (), range(1), "", b"", {})
_PLAIN: Set[type] = {type(iter(x)) for x in _EMPTY}
_TUPLE_ITERATOR = type(iter(()))


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
