"""The consumer side of every parallel dataflow: start once, watch workers, fail clearly."""

from __future__ import annotations

import os
import time
import weakref
from typing import Any, Callable, Iterator, List, Optional, Tuple

from ..base import DataFlowReentrantGuard, Datapoint, ProxyDataFlow
from ..worker import WorkerInfo, _shared_seed
from ._common import (
    _LAST_WORDS_S,
    _LIVENESS_INTERVAL_S,
    _POLL_S,
    ProcessGroup,
    WorkerError,
    check_worker_seed,
    worker_error,
    worker_seeds,
)
from ._wire import DATA, ERROR

Message = Tuple[int, int, int, Any]  # kind, worker index, epoch, payload


class ParallelBase(ProxyDataFlow):
    """Start in ``reset_state()``, iterate under a reentrancy guard, turn worker
    failures into exceptions (then stop every worker), close once.

    Subclasses provide ``_start()``, ``_iterate()``, ``_recv(timeout)``,
    ``_dead_worker()`` and ``_died_error(index)``.
    """

    _num_workers: int
    _sharded = False
    _decode: Optional[Callable[[Any], Any]] = None

    def _setup(self, seed: Any) -> None:
        self._seed = check_worker_seed(seed)
        self._guard = DataFlowReentrantGuard(type(self).__name__)
        self._started = False
        self._closed = False
        self._failure: Optional[BaseException] = None
        self._next_check = 0.0
        self._finalizer: Optional[weakref.finalize] = None

    @property
    def _name(self) -> str:
        return type(self).__name__

    def _infos(self) -> List[WorkerInfo]:
        seeds = worker_seeds(self._seed, self._num_workers)
        if getattr(self, "_shared_seed", None) is None:  # once per runner: all workers agree
            self._shared_seed = _shared_seed(self._seed)
        return [
            WorkerInfo(i, self._num_workers, seeds[i], self._sharded, self._shared_seed)
            for i in range(self._num_workers)
        ]

    # -- the contract -----------------------------------------------------------------

    def reset_state(self) -> None:
        if self._closed:
            raise RuntimeError(
                f"{self._name} was closed; build a new one instead of calling reset_state() again"
            )
        if self._started:
            raise RuntimeError(
                f"{self._name}.reset_state() was called twice; call it once, in the process "
                "that iterates (its workers are already running)"
            )
        self._started = True
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        self._next_check = time.monotonic() + _LIVENESS_INTERVAL_S

    def __iter__(self) -> Iterator[Datapoint]:
        self._check_usable()
        with self._guard:
            try:
                yield from self._iterate()
            except WorkerError as err:
                self._fail(err)
                raise

    def _check_usable(self) -> None:
        if self._failure is not None:
            first_line = str(self._failure).splitlines()[0]
            raise RuntimeError(
                f"{self._name} stopped after a worker failed ({first_line}); build a new one"
            )
        if self._closed:
            raise RuntimeError(f"{self._name} was closed; build a new one to iterate again")
        if not self._started:
            raise RuntimeError(
                f"{self._name} must be reset before iterating: call reset_state() once, in the "
                "process that iterates"
            )

    def _fail(self, err: BaseException) -> None:
        self._failure = err
        self.close()

    def close(self) -> None:
        """Stop the workers (ask, wait, then terminate) and release the sockets; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._finalizer is not None:
            self._finalizer()

    # -- receiving --------------------------------------------------------------------

    def _next_message(self) -> Message:
        """The next data or end message; raises for a worker's error or death."""
        while True:
            message = self._poll_message()
            if message is not None:
                return message

    def _poll_message(self) -> Optional[Message]:
        """The next data or end message, or ``None`` after a short wait without one."""
        message = self._recv(_POLL_S)
        now = time.monotonic()
        if message is None or now >= self._next_check:
            self._next_check = now + _LIVENESS_INTERVAL_S
            self._check_workers()
        if message is None:
            return None
        if message[0] == ERROR:
            self._raise_error(message)
        if message[0] == DATA and self._decode is not None:
            return message[0], message[1], message[2], self._decode(message[3])
        return message

    def _check_workers(self) -> None:
        """Raise if a worker died; first look briefly for the error it may have sent."""
        dead = self._dead_worker()
        if dead is None:
            return
        deadline = time.monotonic() + _LAST_WORDS_S
        while time.monotonic() < deadline:
            message = self._recv(0.05)
            if message is not None and message[0] == ERROR:
                self._raise_error(message)
        raise self._died_error(dead)

    def _raise_error(self, message: Message) -> None:
        report = message[3]
        err = worker_error(self._name, message[1], self._pid(message[1]), report[:3])
        if len(report) > 3:  # a thread's own exception
            raise err from report[3]
        raise err

    # -- what each transport provides --------------------------------------------------

    def _start(self) -> None:
        raise NotImplementedError

    def _iterate(self) -> Iterator[Datapoint]:
        raise NotImplementedError

    def _recv(self, timeout_s: float) -> Optional[Message]:
        raise NotImplementedError

    def _dead_worker(self) -> Optional[int]:
        raise NotImplementedError

    def _died_error(self, index: int) -> WorkerError:
        raise NotImplementedError

    def _pid(self, index: int) -> Optional[int]:
        return os.getpid()


class ProcessWorkers(ParallelBase):
    """A parallel dataflow whose workers are processes of a :class:`ProcessGroup`."""

    _group: Optional[ProcessGroup] = None

    def _dead_worker(self) -> Optional[int]:
        assert self._group is not None
        dead = self._group.dead()
        return None if dead is None else dead[0]

    def _died_error(self, index: int) -> WorkerError:
        assert self._group is not None
        return self._group.died_error(index)

    def _pid(self, index: int) -> Optional[int]:
        if self._group is not None and 0 <= index < len(self._group.procs):
            return int(self._group.procs[index].pid)
        return None

    def _start_group(
        self, start_method: str, target: Callable[..., None], args: List[tuple]
    ) -> None:
        assert self._group is not None
        try:
            self._group.start(target, args)
        except Exception as err:
            if start_method != "fork" and "pickl" in f"{type(err).__name__} {err}".lower():
                raise TypeError(
                    f"{self._name} with start_method={start_method!r} must pickle its dataflow "
                    f"and functions to send them to its workers, which failed: {err}. Use "
                    "start_method='fork', or make them picklable (module-level functions and "
                    "classes, no lambdas or open files)"
                ) from err
            raise
