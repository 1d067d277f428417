"""What every parallel dataflow shares: worker errors, worker start-up, and stopping workers."""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import random
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._checks import check_seed
from ..worker import WorkerInfo, _set_process_worker

__all__ = ["WorkerDiedError", "WorkerError"]

# How long a consumer or worker waits at most before checking that its peers live.
_POLL_S = 0.1
# How often a consumer that is receiving data checks that its workers live.
_LIVENESS_INTERVAL_S = 0.25
# After a worker is found dead: how long to look for the error report it may have sent.
_LAST_WORDS_S = 0.3
# Stopping: how long workers get to stop by themselves, then after SIGTERM, then after SIGKILL.
_STOP_GRACE_S = 0.4
_TERMINATE_GRACE_S = 0.3
_KILL_GRACE_S = 2.0
_THREAD_JOIN_S = 1.0

_PR_SET_PDEATHSIG = 1


class WorkerError(RuntimeError):
    """A worker of a parallel dataflow failed; raised in the process that iterates.

    The message names the dataflow, the worker index and pid, the original
    exception type and message, and ends with the worker's traceback.

    Attributes:
        worker_index: index of the failed worker (``None`` if not known).
        pid: its process id (the consumer's for thread workers).
        exc_type: the name of the original exception type, e.g. ``'ValueError'``.
        remote_traceback: the traceback formatted in the worker, or ``""``.
    """

    def __init__(
        self,
        message: str,
        *,
        worker_index: Optional[int] = None,
        pid: Optional[int] = None,
        exc_type: str = "",
        remote_traceback: str = "",
    ) -> None:
        super().__init__(message)
        self.worker_index = worker_index
        self.pid = pid
        self.exc_type = exc_type
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> Any:
        kwargs = {
            "worker_index": self.worker_index,
            "pid": self.pid,
            "exc_type": self.exc_type,
            "remote_traceback": self.remote_traceback,
        }
        return (_rebuild_error, (type(self), str(self), kwargs))


class WorkerDiedError(WorkerError):
    """A worker process ended without reporting an error (killed by a signal, ``os._exit``).

    Attributes:
        exitcode: the process's exit code, negative ``-N`` when killed by signal ``N``.
    """

    def __init__(self, message: str, *, exitcode: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(message, exc_type="", **kwargs)
        self.exitcode = exitcode

    def __reduce__(self) -> Any:
        kwargs = {"worker_index": self.worker_index, "pid": self.pid, "exitcode": self.exitcode}
        return (_rebuild_error, (type(self), str(self), kwargs))


def _rebuild_error(cls: type, message: str, kwargs: Dict[str, Any]) -> WorkerError:
    return cls(message, **kwargs)  # type: ignore[no-any-return]


# ---- errors as they travel -----------------------------------------------------


def error_report(exc: BaseException) -> Tuple[str, str, str]:
    """``(type name, message, formatted traceback)`` of *exc*, for sending to the consumer."""
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return name, str(exc), text


def worker_error(
    owner: str, index: Optional[int], pid: Optional[int], report: Sequence[str]
) -> WorkerError:
    """The consumer-side exception for an error *report* from a worker."""
    name, message, text = report
    where = f"{owner} worker {index}" if index is not None else f"{owner} worker"
    if pid is not None:
        where += f" (pid {pid})"
    body = f"{where} raised {name}: {message}" if message else f"{where} raised {name}"
    if text:
        body += f"\n\nTraceback in the worker:\n{text.rstrip()}"
    return WorkerError(body, worker_index=index, pid=pid, exc_type=name, remote_traceback=text)


def died_error(
    owner: str, index: int, pid: Optional[int], exitcode: Optional[int]
) -> WorkerDiedError:
    """The consumer-side exception for a worker process that ended without a report."""
    where = f"{owner} worker {index} (pid {pid})"
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        message = f"{where} was killed by {name} without reporting an error"
        if -exitcode == signal.SIGKILL:
            message += (
                "; the out-of-memory killer is the usual cause: use fewer workers, smaller "
                "buffers (hwm, buffer_size) or smaller datapoints"
            )
        elif -exitcode == signal.SIGSEGV:
            message += "; a crash in native code (e.g. an extension module) is the usual cause"
    else:
        message = (
            f"{where} exited with code {exitcode} without reporting an error; something in the "
            "worker called os._exit() or sys.exit()"
        )
    return WorkerDiedError(message, worker_index=index, pid=pid, exitcode=exitcode)


# ---- start-up inside a worker process ----------------------------------------------


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (best effort elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no usable libc
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def start_worker_process(info: WorkerInfo, parent_pid: int, pdeathsig: bool) -> int:
    """Prepare this freshly started process to work as worker *info*.

    Ctrl-C is left to the parent; the process dies with its parent; the
    worker info is set so that sources shard and seed themselves; Python's
    and numpy's global random generators are reseeded (fork copies them, so
    every worker would otherwise draw the same numbers).

    Returns the pid of the parent to watch: *parent_pid*, or with
    ``parent_pid=0`` (forkserver, whose server process is the parent, and
    lives exactly as long as the process that started it) the actual parent.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid == 0:
        parent_pid = os.getppid()
    if pdeathsig:
        _die_with_parent(parent_pid)
    elif os.getppid() != parent_pid:
        os._exit(1)
    try:  # workers may run parallel dataflows of their own
        multiprocessing.current_process().daemon = False
    except AssertionError:  # pragma: no cover - not a multiprocessing child
        pass
    _set_process_worker(info)
    seed_globals(info)
    return parent_pid


def seed_globals(info: WorkerInfo) -> None:
    """Seed ``random`` and ``numpy.random`` for worker *info* (fresh entropy without a seed)."""
    if info.seed is None:
        entropy = np.random.SeedSequence()
    else:
        entropy = np.random.SeedSequence(info.seed, spawn_key=(2**31,))
    words = entropy.generate_state(4)
    random.seed(int.from_bytes(words.tobytes(), "little"))
    np.random.seed(words)


def worker_seeds(seed: Optional[int], n: int) -> List[Optional[int]]:
    """One seed per worker, all different, derived from *seed* (all ``None`` without one)."""
    if seed is None:
        return [None] * n
    return [
        int(child.generate_state(1, np.uint64)[0])
        for child in np.random.SeedSequence(seed).spawn(n)
    ]


def parent_alive(parent_pid: int) -> bool:
    return os.getppid() == parent_pid


# ---- argument checks shared by the parallel dataflows -------------------------------

_START_METHODS = ("fork", "spawn", "forkserver")


def check_start_method(start_method: Optional[str]) -> str:
    """The start method to use: *start_method*, or fork where it exists, else spawn."""
    available = multiprocessing.get_all_start_methods()
    if start_method is None:
        return "fork" if "fork" in available else "spawn"
    if start_method not in _START_METHODS:
        raise ValueError(
            f"start_method must be one of {', '.join(map(repr, _START_METHODS))} or None, "
            f"got {start_method!r}"
        )
    if start_method not in available:
        raise ValueError(
            f"start_method {start_method!r} is not available on this platform; "
            f"use one of {available}"
        )
    return start_method


def check_serializer(serializer: Any) -> Any:
    """*serializer* if it is a Serializer or None, else the TypeError saying so."""
    from ..serialize import Serializer

    if serializer is not None and not isinstance(serializer, Serializer):
        raise TypeError(
            "serializer must be a Serializer (e.g. MsgpackSerializer()) or None, "
            f"got {serializer!r}"
        )
    return serializer


def check_worker_seed(seed: Any) -> Optional[int]:
    return check_seed(seed)


# ---- stopping ------------------------------------------------------------------


def stop_processes(procs: Sequence[Any], stop_event: Any) -> None:
    """Stop worker processes: ask (the stop event), wait, then SIGTERM, then SIGKILL.

    Safe to call twice, and from a garbage-collection finalizer.
    """
    if stop_event is not None:
        try:
            stop_event.set()
        except Exception:  # pragma: no cover - the event's semaphore is gone at exit
            pass
    deadline = time.monotonic() + _STOP_GRACE_S
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    alive = [p for p in procs if p.exitcode is None]
    for p in alive:
        p.terminate()
    deadline = time.monotonic() + _TERMINATE_GRACE_S
    for p in alive:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in alive:
        if p.exitcode is None:
            p.kill()
            p.join(_KILL_GRACE_S)
    for p in procs:
        try:
            p.close()  # frees the sentinel pipe; fails only if still running
        except ValueError:  # pragma: no cover - survived SIGKILL for 2 s
            pass


def stop_threads(threads: Sequence[threading.Thread], stop_event: threading.Event) -> None:
    """Stop worker threads: set the event and join each with a timeout."""
    stop_event.set()
    deadline = time.monotonic() + _THREAD_JOIN_S
    me = threading.current_thread()
    for t in threads:
        if t is not me:
            t.join(max(0.0, deadline - time.monotonic()))


class ProcessGroup:
    """The worker processes of one parallel dataflow: start, watch, stop.

    ``check()`` raises :class:`WorkerDiedError` for a worker that ended.
    ``stop()`` is idempotent and is also run by a ``weakref.finalize`` of the
    owner, only in the process that started the workers.
    """

    def __init__(self, owner: str, start_method: str) -> None:
        self.owner = owner
        self.context: Any = multiprocessing.get_context(start_method)
        self.start_method = start_method
        self.procs: List[Any] = []
        self.stop_event = self.context.Event()
        self.creator_pid = os.getpid()
        #: what workers are told their parent is (0: whoever it is, for forkserver)
        self.parent_pid = 0 if start_method == "forkserver" else self.creator_pid
        self.pdeathsig = threading.current_thread() is threading.main_thread()

    def start(self, target: Callable[..., None], args: List[tuple]) -> None:
        """Start one process per entry of *args*, running ``target(*entry)``."""
        for index, entry in enumerate(args):
            p = self.context.Process(
                target=target,
                args=entry,
                name=f"{self.owner}-worker-{index}",
                daemon=True,
            )
            p.start()
            self.procs.append(p)  # recorded only once started

    def dead(self) -> Optional[Tuple[int, Any]]:
        """``(index, process)`` of the first worker that ended, or ``None``."""
        for index, p in enumerate(self.procs):
            if p.exitcode is not None:
                return index, p
        return None

    def died_error(self, index: int) -> WorkerDiedError:
        p = self.procs[index]
        err = died_error(self.owner, index, p.pid, p.exitcode)
        if self.start_method != "fork" and p.exitcode == 1:
            err = WorkerDiedError(
                f"{err}. With start_method={self.start_method!r} the worker imports the main "
                "module again: a script that builds the dataflow must do so under "
                "if __name__ == '__main__':",
                worker_index=index,
                pid=p.pid,
                exitcode=p.exitcode,
            )
        return err

    def stop(self) -> None:
        if os.getpid() != self.creator_pid:
            return
        procs, self.procs = self.procs, []
        stop_processes(procs, self.stop_event)


def run_finalizer(group: ProcessGroup, closers: Sequence[Callable[[], None]]) -> None:
    """Stop *group* and then run *closers* (e.g. closing sockets); for ``weakref.finalize``."""
    if os.getpid() != group.creator_pid:
        return
    try:
        group.stop()
    finally:
        for close in closers:
            try:
                close()
            except Exception:  # pragma: no cover - best effort at exit
                pass


WorkerError.__module__ = WorkerDiedError.__module__ = "dataflow.parallel"
