"""Worker groups: start worker processes or threads, watch them, stop them.

A consumer holds one group. :class:`ProcessGroup` and :class:`ThreadGroup`
answer the same questions: which worker ended (:meth:`dead`), the error
that says so (:meth:`died_error`), a worker's pid, where every worker is
now (:meth:`stacks`, for stall reports), and :meth:`stop` (ask, wait,
insist). What runs first in a worker process is here too
(:func:`worker_main`, :func:`start_worker_process`, :func:`watch_creator`),
module-level so that spawn and forkserver can find it.
"""

from __future__ import annotations

import contextlib
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
from multiprocessing import resource_tracker
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .._checks import check_seed
from .._checks import check_serializer as check_serializer
from .._progress import bar_classes
from .._rng import seed_globals as seed_globals
from .._rng import worker_seeds as worker_seeds
from .._worker_state import set_process_worker
from ..worker import WorkerInfo
from ._errors import WorkerDiedError, WorkerError, died_error

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

# Process.start() first walks multiprocessing's table of children and polls each, and
# Process.close() empties an entry before it leaves the table. On Python 3.9 a close()
# in one thread while another starts a process makes the walk fail (AttributeError on
# a closed entry), so the workers of all parallel dataflows start and close under this
# lock. A child made by fork gets a new one: the copy may be held by the starting thread.
_PROCESS_TABLE = threading.Lock()


def _new_process_table_lock() -> None:
    global _PROCESS_TABLE
    _PROCESS_TABLE = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_process_table_lock)


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


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Within the block, a Ctrl-C waits; it takes effect (``KeyboardInterrupt``) on exit.

    SIGINT is blocked, so that processes started meanwhile inherit the block;
    and in the main thread, a SIGINT that arrived just before (Python runs its
    handler a little later, between two bytecodes) is noted instead of raised
    in the middle of starting a process, which would leave that process
    without its start-up data.
    """
    noted: List[int] = []
    previous: Any = None
    if threading.current_thread() is threading.main_thread():
        try:
            previous = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
        except (ValueError, OSError):  # pragma: no cover - no signals here
            previous = None
    mask = _block_sigint()
    try:
        yield
    finally:
        try:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
                if noted and callable(previous):
                    previous(signal.SIGINT, None)  # default_int_handler: KeyboardInterrupt
                elif noted and previous == signal.SIG_DFL:  # pragma: no cover
                    signal.raise_signal(signal.SIGINT)
        finally:
            _restore_sigmask(mask)  # a SIGINT held by the block arrives now


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
    set_process_worker(info)
    seed_globals(info)
    own_progress_lock()
    return parent_pid


def own_progress_lock() -> None:
    """Give tqdm a lock of this process only. A forked process shares its parent's
    tqdm lock (a multiprocessing semaphore); killed while it holds it (a progress
    bar printing, then SIGKILL), it would leave every later progress bar of the
    parent waiting forever."""
    lock = threading.RLock()
    base, *subclasses = bar_classes()
    base.set_lock(lock)  # type: ignore[attr-defined]
    for cls in subclasses:  # this library's ProgressBar, tqdm.auto's, a user's
        if "_lock" in vars(cls):
            cls.set_lock(lock)  # type: ignore[attr-defined]


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
            with _PROCESS_TABLE:
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
        if self.start_method != "fork":
            # Started on first use by spawn and forkserver, and unblocking SIGINT when it
            # starts (multiprocessing does so), which would undo the block below.
            resource_tracker.ensure_running()
        with _sigint_held():
            for index, entry in enumerate(args):
                reader, writer = self.context.Pipe(duplex=False)
                p = self.context.Process(
                    target=worker_main,
                    args=(target, entry, writer, self.creator_pid),
                    name=f"{self.owner}-worker-{index}",
                    daemon=True,
                )
                try:
                    with _PROCESS_TABLE:
                        p.start()
                except BaseException:
                    reader.close()
                    raise
                finally:
                    writer.close()  # the worker has its own copy now
                self.procs.append(p)  # recorded only once started
                self.stack_readers.append(reader)

    def stacks(self) -> List[Tuple[int, Optional[int], Optional[str]]]:
        """``(index, pid, stacks)`` of every worker; ``None`` for a worker that ended."""
        out: List[Tuple[int, Optional[int], Optional[str]]] = []
        for index, (p, reader) in enumerate(zip(self.procs, self.stack_readers)):
            if p.exitcode is not None:
                out.append((index, p.pid, None))
            else:
                out.append((index, p.pid, read_stacks(reader, p.pid)))
        return out

    def dead(self) -> Optional[int]:
        """The index of the first worker that ended, or ``None``."""
        for index, p in enumerate(self.procs):
            if p.exitcode is not None:
                return index
        return None

    def pid(self, index: int) -> Optional[int]:
        if 0 <= index < len(self.procs):
            return int(self.procs[index].pid)
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


def run_finalizer(group: Any, closers: Sequence[Callable[[], None]]) -> None:
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


class ThreadGroup:
    """The worker threads of one parallel dataflow, as :class:`ProcessGroup` for processes.

    A thread cannot be killed: :meth:`stop` sets the stop event and waits for
    each thread at most ``_THREAD_JOIN_S``.
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.threads: List[threading.Thread] = []
        self.stop_event = threading.Event()
        self.creator_pid = os.getpid()

    def start(self, target: Callable[..., None], args: List[tuple]) -> None:
        """Start one thread per entry of *args*, running ``target(*entry)``."""
        for index, entry in enumerate(args):
            t = threading.Thread(
                target=target, args=entry, name=f"{self.owner}-worker-{index}", daemon=True
            )
            t.start()
            self.threads.append(t)

    def dead(self) -> Optional[int]:
        for index, t in enumerate(self.threads):
            if not t.is_alive():
                return index
        return None

    def died_error(self, index: int) -> WorkerError:
        return WorkerError(
            f"{self.owner} worker thread {index} ended without reporting an error",
            worker_index=index,
            pid=os.getpid(),
        )

    def pid(self, index: int) -> Optional[int]:
        return os.getpid()

    def stacks(self) -> List[Tuple[int, Optional[int], Optional[str]]]:
        return thread_stacks(self.threads)

    def stop(self) -> None:
        stop_threads(self.threads, self.stop_event)


def thread_stacks(
    threads: Sequence[threading.Thread],
) -> List[Tuple[int, Optional[int], Optional[str]]]:
    """``(index, pid, stack)`` of worker threads, as :meth:`ProcessGroup.stacks` gives."""
    frames = sys._current_frames()
    out: List[Tuple[int, Optional[int], Optional[str]]] = []
    for index, t in enumerate(threads):
        frame = frames.get(t.ident) if t.ident is not None else None
        if not t.is_alive() or frame is None:
            out.append((index, os.getpid(), None))
        else:
            stack = "".join(traceback.format_stack(frame))
            out.append((index, os.getpid(), f"Thread {t.name} (most recent call last):\n{stack}"))
    return out


WorkerGroup = Any  # a ProcessGroup or a ThreadGroup
