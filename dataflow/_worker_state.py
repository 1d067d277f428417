"""Which worker the current process or thread is: set by the runners, read by the code they run.

A worker process declares itself once with :func:`set_process_worker`; a
worker thread (or code that pretends to run in a worker, as tests do) runs
inside :func:`worker_context`, which takes precedence over the process's
worker. :func:`current_state` returns what is set, or ``None`` outside
workers. :func:`dataflow.worker.get_worker_info` is the public view of it;
the runners of :mod:`dataflow.parallel` use the rest. The state also counts
the random generators reset in the worker (each gets its own stream, see
:mod:`dataflow._rng`) and holds the number of the pass the runner announced
last (:func:`begin_pass`).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from typing import TYPE_CHECKING, Iterator, Optional, Union

if TYPE_CHECKING:
    from .worker import WorkerInfo

__all__ = ["WorkerState", "begin_pass", "current_state", "set_process_worker", "worker_context"]


class WorkerState:
    """The worker of a process or thread, how many seeds it has handed out, the
    number of the pass its runner announced last (``None``: none so far), and
    whether code it runs asked where it runs (``get_worker_info()``, a shard
    order): a dataflow that never asked cannot have read only its shard."""

    def __init__(self, info: WorkerInfo) -> None:
        self.info = info
        self.counter = itertools.count()
        self.pass_number: Optional[int] = None
        self.asked = False


_PROCESS_STATE: Optional[WorkerState] = None
_THREAD_STATE = threading.local()


def current_state() -> Optional[WorkerState]:
    """The state of the worker this thread runs in (its own, else its process's), or ``None``."""
    state = getattr(_THREAD_STATE, "state", None)
    return state if state is not None else _PROCESS_STATE


def set_process_worker(info: Optional[WorkerInfo]) -> None:
    """Declare that this process is a worker (called first thing in a worker process)."""
    global _PROCESS_STATE
    _PROCESS_STATE = None if info is None else WorkerState(info)
    # A forked process inherits the forking thread's thread-local state, which
    # would take precedence over the process's: the parent may have been inside
    # a worker_context (a runner started by code that reads one shard).
    _THREAD_STATE.state = None


@contextlib.contextmanager
def worker_context(info: Union[WorkerInfo, WorkerState]) -> Iterator[None]:
    """Within the block, this thread counts as worker *info* (restored after).

    Given a :class:`WorkerState`, the block enters that state itself, so its
    counter of seeds and its pass number carry over from one block to the
    next (for code that enters the same worker around every step).
    """
    previous = getattr(_THREAD_STATE, "state", None)
    _THREAD_STATE.state = info if isinstance(info, WorkerState) else WorkerState(info)
    try:
        yield
    finally:
        _THREAD_STATE.state = previous


def begin_pass(pass_number: int) -> None:
    """Declare that the runner of this worker starts its pass *pass_number*.

    A runner that calls this in every worker before each pass of an
    exactly-once run, with the same number in all of them (the pass number
    the consumer sent), makes :func:`dataflow.worker.shard_order` draw a new
    partition for every pass. Without it the partition stays the same in
    every pass. A worker's count of its own passes cannot stand in for the
    number: a worker that reads its commands late takes only the newest,
    skipping passes that were abandoned meanwhile, and its count then
    differs from the other workers', so their parts would overlap.
    """
    state = current_state()
    if state is not None:
        state.pass_number = pass_number
