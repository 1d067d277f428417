"""The DataFlow contract as a reusable check, for this library's tests and yours.

Call :func:`check_dataflow` in a test with a function that builds a fresh
dataflow; it fails with an ``AssertionError`` that says which rule was broken.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any, Callable, FrozenSet, List, Optional, Set

from ._checks import check_int as _check_int
from .base import DataFlow, UnknownLengthError

__all__ = ["check_dataflow", "live_child_pids", "live_threads"]

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
) -> List[Any]:
    """Check that the dataflow *make_df()* builds keeps the DataFlow contract.

    The checks: ``make_df()`` returns a :class:`DataFlow`; one
    ``reset_state()`` is enough for several passes; every datapoint is a list
    or dict; all passes have the same length; ``len()`` equals that length or
    raises :class:`UnknownLengthError`; ``get_data()`` and ``size()`` agree
    with ``iter()`` and ``len()``; a pass abandoned early does not spoil the
    next one; ``close()`` twice is harmless; and no thread or child process
    started by the dataflow survives ``close()``.

    Args:
        make_df: builds a new, not yet reset, dataflow each time it is called.
        infinite: the dataflow never ends; each pass takes *max_datapoints*.
        max_datapoints: for an infinite dataflow, how many datapoints one pass
            takes; for a finite one, more than this fails the check (a finite
            dataflow under test should be small).
        num_passes: how many full passes to compare (at least 2).

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
    finally:
        df.close()
    df.close()
    leftovers = wait_for_leftovers(threads_before, children_before)
    if leftovers:
        _fail(what, df, "still alive after close(): " + ", ".join(leftovers))
    return passes[0]
