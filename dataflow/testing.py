"""The DataFlow contract as a reusable check, for this library's tests and yours.

Call :func:`check_dataflow` in a test with a function that builds a fresh
dataflow; it fails with an ``AssertionError`` that says which rule was broken.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import threading
import time
from typing import Any, Callable, FrozenSet, List, Optional, Set

import numpy as np

from ._checks import check_int as _check_int
from ._state import ResumeNotSupportedError
from .base import DataFlow, UnknownLengthError

__all__ = ["check_dataflow", "check_resume", "live_child_pids", "live_threads"]

_SETTLE_TIMEOUT_S = 5.0
_SETTLE_POLL_S = 0.02


def live_child_pids() -> FrozenSet[int]:
    """The pids of this process's live (not zombie) child processes."""
    pids: Set[int] = set()
    me = os.getpid()
    task_dir = f"/proc/{me}/task"
    if os.path.isdir(task_dir):
        for tid in os.listdir(task_dir):
            try:
                with open(f"{task_dir}/{tid}/children") as f:
                    pids.update(int(p) for p in f.read().split())
            except OSError:
                continue
        alive = set()
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state not in ("Z", "X"):
                alive.add(pid)
        return frozenset(alive)
    import multiprocessing  # not Linux: only children started by multiprocessing

    return frozenset(p.pid for p in multiprocessing.active_children() if p.pid is not None)


def live_threads() -> FrozenSet[threading.Thread]:
    """The live threads of this process."""
    return frozenset(t for t in threading.enumerate() if t.is_alive())


def wait_for_leftovers(
    threads_before: FrozenSet[threading.Thread],
    children_before: FrozenSet[int],
    timeout: float = _SETTLE_TIMEOUT_S,
) -> List[str]:
    """Describe threads and child processes started since the snapshot that are
    still alive after waiting up to *timeout* seconds for them to end."""
    deadline = time.monotonic() + timeout
    while True:
        threads = live_threads() - threads_before
        children = live_child_pids() - children_before
        if not threads and not children:
            return []
        if time.monotonic() >= deadline:
            return [f"thread {t.name!r}" for t in threads] + [
                f"child process {pid}" for pid in sorted(children)
            ]
        time.sleep(_SETTLE_POLL_S)


def _fail(what: str, df: Any, message: str) -> None:
    raise AssertionError(f"{what} ({type(df).__name__}): {message}")


def _one_pass(df: DataFlow, limit: Optional[int], what: str) -> List[Any]:
    it = iter(df)
    out = list(itertools.islice(it, limit)) if limit is not None else list(it)
    if limit is not None and len(out) < limit:
        _fail(what, df, f"an infinite dataflow stopped after {len(out)} datapoints")
    for k, dp in enumerate(out):
        if not isinstance(dp, (list, dict)):
            _fail(what, df, f"datapoint {k} is a {type(dp).__name__}, not a list or dict")
    return out


def check_dataflow(
    make_df: Callable[[], DataFlow],
    *,
    infinite: bool = False,
    max_datapoints: int = 1000,
    num_passes: int = 2,
    resume: Optional[bool] = None,
) -> List[Any]:
    """Check that the dataflow *make_df()* builds keeps the DataFlow contract.

    The checks: ``make_df()`` returns a :class:`DataFlow`; one
    ``reset_state()`` is enough for several passes; every datapoint is a list
    or dict; all passes have the same length; ``len()`` equals that length or
    raises :class:`UnknownLengthError`; ``get_data()`` and ``size()`` agree
    with ``iter()`` and ``len()``; a pass abandoned early does not spoil the
    next one; ``close()`` twice is harmless; no thread or child process
    started by the dataflow survives ``close()``; and, when the dataflow
    can save its position, :func:`check_resume`.

    Args:
        make_df: builds a new, not yet reset, dataflow each time it is called.
        infinite: the dataflow never ends; each pass takes *max_datapoints*.
        max_datapoints: for an infinite dataflow, how many datapoints one pass
            takes; for a finite one, more than this fails the check (a finite
            dataflow under test should be small).
        num_passes: how many full passes to compare (at least 2).
        resume: run :func:`check_resume` (``True``), skip it (``False``), or
            run it unless ``state_dict()`` says the pipeline cannot be
            resumed (``None``, the default).

    Returns:
        The datapoints of the first pass, for further assertions.

    Example:
        >>> class Pairs(DataFlow):
        ...     def __iter__(self):
        ...         yield from ([i, -i] for i in range(3))
        >>> check_dataflow(Pairs)
        [[0, 0], [1, -1], [2, -2]]
    """
    _check_int("max_datapoints", max_datapoints, 1, "a positive int")
    _check_int("num_passes", num_passes, 2, "an int >= 2")
    threads_before, children_before = live_threads(), live_child_pids()
    df = make_df()
    what = "check_dataflow"
    if not isinstance(df, DataFlow):
        raise AssertionError(f"{what}: make_df() returned {type(df).__name__}, not a DataFlow")
    try:
        df.reset_state()
        limit = max_datapoints if infinite else None
        passes = [_one_pass(df, limit, what)]
        if not infinite and len(passes[0]) > max_datapoints:
            _fail(
                what,
                df,
                f"one pass yielded {len(passes[0])} datapoints, more than "
                f"max_datapoints={max_datapoints}; test a smaller dataflow or raise the limit",
            )
        # Abandon a pass after one datapoint: the next full pass must not notice.
        abandoned = iter(df)
        next(abandoned, None)
        del abandoned
        for _ in range(num_passes - 1):
            passes.append(_one_pass(df, limit, what))
        old_style = df.get_data()
        passes.append(list(itertools.islice(old_style, limit)) if limit else list(old_style))
        del old_style
        lengths = [len(p) for p in passes]
        if len(set(lengths)) != 1:
            _fail(
                what,
                df,
                f"passes yielded different numbers of datapoints: {lengths} "
                "(the last pass used get_data())",
            )
        try:
            n = len(df)
        except UnknownLengthError:
            n = None
        except TypeError as err:
            _fail(what, df, f"len() raised a TypeError that is not UnknownLengthError: {err}")
        except NotImplementedError as err:
            _fail(
                what,
                df,
                f"len() raised a NotImplementedError that is not "
                f"UnknownLengthError, so list(df) would fail: {err}",
            )
        if n is not None:
            if infinite:
                _fail(what, df, f"an infinite dataflow reported len() = {n}")
            if n != lengths[0]:
                _fail(what, df, f"len() is {n} but one pass yielded {lengths[0]} datapoints")
            if df.size() != n:
                _fail(what, df, f"size() is {df.size()} but len() is {n}")
        if resume is None:
            resume = _saves_state(df)
    finally:
        df.close()
    df.close()
    leftovers = wait_for_leftovers(threads_before, children_before)
    if leftovers:
        _fail(what, df, "still alive after close(): " + ", ".join(leftovers))
    if resume:
        check_resume(
            make_df, infinite=infinite, max_datapoints=max_datapoints, ordered=_ordered(df)
        )
    return passes[0]


def _ordered(df: DataFlow) -> bool:
    """Whether *df*'s order is repeatable: no parallel dataflow in it whose workers'
    output merges as it arrives (see their ``keeps_order``)."""
    seen, stack = set(), [df]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if not getattr(node, "keeps_order", True):
            return False
        stack.extend(getattr(node, "parents", ()))
    return True


def _saves_state(df: DataFlow) -> bool:
    try:
        df.state_dict()
    except ResumeNotSupportedError:
        return False
    return True


def _same(a: Any, b: Any) -> bool:
    """Whether datapoints (or lists of them) *a* and *b* are equal, arrays by
    dtype, shape and value."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def _sorted(datapoints: List[Any]) -> List[Any]:
    """*datapoints* in an order that does not depend on the order they came in."""
    return sorted(datapoints, key=lambda dp: pickle.dumps(_canonical(dp)))


def _canonical(dp: Any) -> Any:
    if isinstance(dp, np.ndarray):
        return ("array", dp.dtype.str, dp.shape, np.ascontiguousarray(dp).tobytes())
    if isinstance(dp, (list, tuple)):
        return [_canonical(x) for x in dp]
    if isinstance(dp, dict):
        return sorted((repr(k), _canonical(v)) for k, v in dp.items())
    return dp


def _take(df: DataFlow, it: Any, limit: Optional[int]) -> List[Any]:
    return list(itertools.islice(it, limit)) if limit is not None else list(it)


def check_resume(
    make_df: Callable[[], DataFlow],
    *,
    infinite: bool = False,
    max_datapoints: int = 1000,
    ordered: bool = True,
) -> None:
    """Check that ``state_dict()`` / ``load_state_dict()`` of *make_df()* resume exactly.

    For a pipeline stopped after 0, 1, half, all but one and all datapoints of
    its first pass, after a whole pass, and halfway through its second pass:
    the state, made JSON and back, is loaded into a new pipeline from
    *make_df()*, whose rest of the pass and next pass must equal those of the
    pipeline that went on uninterrupted (arrays by dtype, shape and value).
    Unseeded pipelines qualify too: the state holds the random states.

    Args:
        make_df: builds a new, not yet reset, dataflow each time it is called.
        infinite: the dataflow never ends; a "pass" is *max_datapoints*.
        max_datapoints: the most datapoints to read per pass.
        ordered: compare in order (``True``), or as collections, for a
            pipeline whose order depends on timing (a runner whose workers'
            datapoints merge as they arrive): the rest of the pass must then
            hold the same datapoints, each as often, and so must the next pass.

    Example:
        >>> check_resume(lambda: BatchData(DataFromList([[i] for i in range(9)], seed=0), 2))
    """
    limit = max_datapoints if infinite else None
    with make_df() as probe:
        probe.reset_state()
        n = len(_take(probe, iter(probe), limit))
    # An infinite pipeline's "pass" is cut short: stopping after all of it would
    # leave an iterator that the resumed run abandons before asking it for anything.
    stops = sorted({0, min(1, n), n // 2, max(n - 1, 0)} | (set() if infinite else {n}))
    # After an infinite pipeline's cut-short pass, only a position inside the next
    # one is well defined: the state in between describes the abandoned pass.
    cases = [(0, k) for k in stops] + ([(1, n // 2)] if infinite else [(1, 0), (1, n // 2)])
    for passes_before, k in cases:
        where = f"stopped after {passes_before} whole pass(es) and {k} datapoint(s)"
        with make_df() as original:
            original.reset_state()
            for _ in range(passes_before):
                _take(original, iter(original), limit)
            it = iter(original)
            # A pass of random length may end before k: the state is then between passes.
            ended = len(_take(original, it, k)) < k
            state = json.loads(json.dumps(original.state_dict()))
            rest = [] if ended else _take(original, it, None if limit is None else limit - k)
            del it
            following = _take(original, iter(original), limit)
        with make_df() as resumed:
            resumed.reset_state()
            resumed.load_state_dict(state)
            rest_again = [] if ended else _take(resumed, iter(resumed), limit and limit - k)
            following_again = _take(resumed, iter(resumed), limit)
        if not ordered:
            rest, rest_again = _sorted(rest), _sorted(rest_again)
            following, following_again = _sorted(following), _sorted(following_again)
        if not _same(rest, rest_again):
            _fail(
                "check_resume",
                original,
                f"{where}: the resumed pass yielded {len(rest_again)} datapoint(s) that "
                f"differ from the {len(rest)} the uninterrupted pass yielded",
            )
        if not _same(following, following_again):
            _fail(
                "check_resume",
                original,
                f"{where}: the pass after the resumed one differs from the uninterrupted run's",
            )
