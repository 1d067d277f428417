"""What every parallel dataflow shares: worker errors, worker start-up, and stopping workers."""

from __future__ import annotations

import builtins
import ctypes
import ctypes.util
import faulthandler
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .._checks import check_seed
from .._rng import seed_globals, worker_seeds  # noqa: F401 (_base.py imports worker_seeds here)
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


def _rebuild_typed_error(original: type, message: str, kwargs: Dict[str, Any]) -> WorkerError:
    return typed_error_class(original)(message, **kwargs)


# Types a worker's error is never also made an instance of: a StopIteration raised in a
# generator becomes a RuntimeError (PEP 479); SystemExit, KeyboardInterrupt and other
# BaseExceptions would end the consumer instead of reporting a worker's failure.
_NOT_MIRRORED = (StopIteration, StopAsyncIteration, WorkerError)
_TYPED_CLASSES: Dict[type, type] = {}


def typed_error_class(original: Optional[type]) -> type:
    """The subclass of both :class:`WorkerError` and *original* that the consumer raises,
    so that ``except FileNotFoundError:`` catches a worker's ``FileNotFoundError``.

    :class:`WorkerError` itself when *original* is unknown, is not an ``Exception``
    (``SystemExit``, ``KeyboardInterrupt``), is a ``StopIteration`` or cannot be
    subclassed (``bool``-like final types, layout conflicts).
    """
    if (
        not isinstance(original, type)
        or not issubclass(original, Exception)
        or issubclass(original, _NOT_MIRRORED)
    ):
        return WorkerError
    cls = _TYPED_CLASSES.get(original)
    if cls is None:
        namespace = {
            "__init__": WorkerError.__init__,
            "__str__": BaseException.__str__,  # KeyError's own would quote the message
            "__repr__": BaseException.__repr__,
            "__reduce__": _typed_reduce,
            "__module__": "dataflow.parallel",
            "__qualname__": f"WorkerError[{original.__qualname__}]",
            "original_type": original,
        }
        try:
            cls = type(f"WorkerError[{original.__name__}]", (WorkerError, original), namespace)
        except TypeError:  # a final type, or instance layouts that cannot be combined
            cls = WorkerError
        _TYPED_CLASSES[original] = cls
    return cls


def _typed_reduce(self: WorkerError) -> Any:
    kwargs = {
        "worker_index": self.worker_index,
        "pid": self.pid,
        "exc_type": self.exc_type,
        "remote_traceback": self.remote_traceback,
    }
    return (_rebuild_typed_error, (type(self).original_type, str(self), kwargs))  # type: ignore[attr-defined]


def resolve_type(name: str) -> Optional[type]:
    """The exception class a worker's error report names (``'ValueError'``,
    ``'pkg.mod.Error'``), if the consumer has it already: a module the consumer
    has not imported is not imported for this, and ``<locals>`` classes are not found."""
    if "." not in name:
        found = getattr(builtins, name, None)
        return found if isinstance(found, type) else None
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:split]))
        if module is None:
            continue
        obj: Any = module
        for attr in parts[split:]:
            obj = getattr(obj, attr, None)
        return obj if isinstance(obj, type) else None
    return None


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
    owner: str,
    index: Optional[int],
    pid: Optional[int],
    report: Sequence[str],
    original: Optional[type] = None,
) -> WorkerError:
    """The consumer-side exception for an error *report* from a worker.

    It is an instance of :class:`WorkerError` and, where possible, of the
    worker's exception type too (*original*, or the type the report names).
    """
    name, message, text = report
    where = f"{owner} worker {index}" if index is not None else f"{owner} worker"
    if pid is not None:
        where += f" (pid {pid})"
    body = f"{where} raised {name}: {message}" if message else f"{where} raised {name}"
    if text:
        body += f"\n\nTraceback in the worker:\n{text.rstrip()}"
    cls = typed_error_class(original if original is not None else resolve_type(name))
    return cls(body, worker_index=index, pid=pid, exc_type=name, remote_traceback=text)  # type: ignore[no-any-return]


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


# The signal that makes a worker process write its threads' Python stacks (faulthandler).
_STACK_SIGNAL = signal.SIGUSR2 if hasattr(signal, "SIGUSR2") else None
# How long the consumer waits for a worker's stacks after asking for them.
_STACK_WAIT_S = 1.0
_STACK_QUIET_S = 0.1


def _block_sigint() -> Any:
    """Block SIGINT in this thread; returns the mask to restore (``None`` if unsupported).

    A process started meanwhile inherits the mask, so a Ctrl-C cannot reach it
    before its first instruction (under spawn, a worker imports modules first).
    """
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def _restore_sigmask(mask: Any) -> None:
    if mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def worker_main(
    target: Callable[..., None], entry: Tuple[Any, ...], stack_writer: Any, creator_pid: int
) -> None:
    """The first function a worker process runs (module level, so spawn can find it).

    Ctrl-C is ignored, then unblocked (it was blocked by the parent while it
    started the process, so a Ctrl-C during start-up is dropped rather than
    printing a traceback); the process writes its Python stacks to
    *stack_writer* when the consumer sends it :data:`_STACK_SIGNAL`. Then it
    runs ``target(*entry)``.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _WATCH["creator_pid"] = creator_pid
    if _STACK_SIGNAL is not None and stack_writer is not None:
        faulthandler.register(_STACK_SIGNAL, file=stack_writer, all_threads=True, chain=False)
    target(*entry)


_WATCH: Dict[str, Any] = {"creator_pid": None, "thread": None}


def watch_creator() -> None:
    """End this worker process as soon as the process that started it ends.

    ``PR_SET_PDEATHSIG`` only covers a worker forked from the main thread of
    the consumer; under forkserver the parent is the fork server, and after
    a ``reset_state()`` in another thread it is that thread. So a daemon
    thread waits on a pidfd of the consumer (polls, where pidfds do not
    exist) and exits the process when it ends. Call it after the worker's
    dataflow was reset, so that a dataflow that forks workers of its own
    does not fork while this thread runs. Once per process.
    """
    creator_pid = _WATCH["creator_pid"]
    if creator_pid is None or _WATCH["thread"] is not None:
        return
    try:
        fd: Optional[int] = os.pidfd_open(creator_pid)  # type: ignore[attr-defined]
    except (AttributeError, OSError):  # pragma: no cover - old kernel or not Linux
        fd = None
    thread = threading.Thread(
        target=_wait_for_exit, args=(creator_pid, fd), name="dataflow-watch-parent", daemon=True
    )
    thread.start()
    _WATCH["thread"] = thread


def _wait_for_exit(pid: int, fd: Optional[int]) -> None:
    if fd is not None:
        select.select([fd], [], [])  # readable once the process ended
    else:  # pragma: no cover - without pidfds
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:  # pid reused by another user's process
                break
            time.sleep(_POLL_S * 5)
    os._exit(1)


def read_stacks(reader: Any, pid: Optional[int]) -> str:
    """Ask worker process *pid* for its Python stacks and return what it wrote to *reader*."""
    if _STACK_SIGNAL is None or pid is None:  # pragma: no cover - no SIGUSR2
        return ""
    fd = reader.fileno()
    while select.select([fd], [], [], 0)[0]:  # drop an earlier, late answer
        if not os.read(fd, 1 << 16):
            return ""
    try:
        os.kill(pid, _STACK_SIGNAL)
    except ProcessLookupError:
        return ""
    chunks: List[bytes] = []
    deadline = time.monotonic() + _STACK_WAIT_S
    while time.monotonic() < deadline:
        wait = _STACK_QUIET_S if chunks else max(0.0, deadline - time.monotonic())
        if not select.select([fd], [], [], wait)[0]:
            if chunks:
                break
            continue
        data = os.read(fd, 1 << 16)
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


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
        self.stack_readers: List[Any] = []
        self.stop_event = self.context.Event()
        self.creator_pid = os.getpid()
        #: what workers are told their parent is (0: whoever it is, for forkserver)
        self.parent_pid = 0 if start_method == "forkserver" else self.creator_pid
        self.pdeathsig = threading.current_thread() is threading.main_thread()

    def start(self, target: Callable[..., None], args: List[tuple]) -> None:
        """Start one process per entry of *args*, running ``target(*entry)``.

        SIGINT is blocked meanwhile in this thread, so the workers start with
        it blocked (see :func:`worker_main`).
        """
        mask = _block_sigint()
        try:
            for index, entry in enumerate(args):
                reader, writer = self.context.Pipe(duplex=False)
                p = self.context.Process(
                    target=worker_main,
                    args=(target, entry, writer, self.creator_pid),
                    name=f"{self.owner}-worker-{index}",
                    daemon=True,
                )
                try:
                    p.start()
                except BaseException:
                    reader.close()
                    raise
                finally:
                    writer.close()  # the worker has its own copy now
                self.procs.append(p)  # recorded only once started
                self.stack_readers.append(reader)
        finally:
            _restore_sigmask(mask)

    def stacks(self) -> List[Tuple[int, Optional[int], Optional[str]]]:
        """``(index, pid, stacks)`` of every worker; ``None`` for a worker that ended."""
        out: List[Tuple[int, Optional[int], Optional[str]]] = []
        for index, (p, reader) in enumerate(zip(self.procs, self.stack_readers)):
            if p.exitcode is not None:
                out.append((index, p.pid, None))
            else:
                out.append((index, p.pid, read_stacks(reader, p.pid)))
        return out

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
        readers, self.stack_readers = self.stack_readers, []
        try:
            stop_processes(procs, self.stop_event)
        finally:
            for reader in readers:
                reader.close()


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
